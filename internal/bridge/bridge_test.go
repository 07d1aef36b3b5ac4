package bridge

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/ecr"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

type fixedTokens struct{ expires time.Time }

func (f fixedTokens) Credentials(context.Context, string) (ecr.Credentials, error) {
	return ecr.Credentials{Username: "AWS", Password: "secret-token", ExpiresAt: f.expires}, nil
}

func TestRefresh(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := testutil.Context(testutil.QuietLogger())
	tests := []struct {
		name    string
		setup   func(dir string)
		wantErr string
	}{
		{name: "new file"},
		{name: "_default would be hidden", setup: func(dir string) { _ = os.MkdirAll(filepath.Join(dir, "_default"), 0o755) }, wantErr: "_default"},
		{name: "certificate files would stop being read", setup: func(dir string) {
			_ = os.MkdirAll(filepath.Join(dir, host), 0o755)
			_ = os.WriteFile(filepath.Join(dir, host, "ca.crt"), []byte("x"), 0o644)
		}, wantErr: "certificate files"},
		{name: "malformed existing file left untouched", setup: func(dir string) {
			_ = os.MkdirAll(filepath.Join(dir, host), 0o755)
			_ = os.WriteFile(filepath.Join(dir, host, "hosts.toml"), []byte("server = [[["), 0o644)
		}, wantErr: "left untouched"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.setup != nil {
				tt.setup(dir)
			}
			before, _ := os.ReadFile(filepath.Join(dir, host, "hosts.toml"))
			b := &Bridge{Dir: dir, Hosts: []string{host}, Tokens: fixedTokens{now.Add(12 * time.Hour)}, Now: func() time.Time { return now }}
			next, err := b.Refresh(ctx, host)
			after, _ := os.ReadFile(filepath.Join(dir, host, "hosts.toml"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), dir) {
					t.Fatalf("Refresh error = %v, want one naming the file and containing %q", err, tt.wantErr)
				}
				if string(after) != string(before) {
					t.Fatalf("file changed on error:\n%s", after)
				}
				if st := b.State(); st[0].Err == "" || strings.Contains(st[0].Err, "secret-token") {
					t.Fatalf("state %+v: want the error, never the token", st[0])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if next != time.Hour { // half of 12 h, capped at an hour
				t.Errorf("next refresh in %v, want 1h", next)
			}
			if !strings.Contains(string(after), "Authorization = [\"Basic ") {
				t.Errorf("no header written:\n%s", after)
			}
		})
	}
}

// The token goes only to the ECR registry itself over https (or a declared host, e.g. a
// loopback test registry, over http): a hosts.toml whose server is a cache, another host or
// plain http gets nothing, and an entry written before the file changed is taken out.
func TestRefreshSendsTheTokenOnlyToTheRegistry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := testutil.Context(testutil.QuietLogger())
	tests := []struct {
		name     string
		server   string
		declared bool
		wantErr  string // empty: written
	}{
		{name: "the registry over https", server: "https://" + host},
		{name: "no server line: https://<host>", server: ""},
		{name: "a cache in clear text", server: "http://cache.example.net:5000", wantErr: "not to the ECR registry itself"},
		{name: "a cache over https", server: "https://cache.example.net", wantErr: "not to the ECR registry itself"},
		{name: "the registry over http", server: "http://" + host, wantErr: "not https"},
		{name: "a declared registry over http", server: "http://" + host, declared: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, host, "hosts.toml")
			if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
				t.Fatal(err)
			}
			content := "# the operator's file\n"
			if tt.server != "" {
				content += "server = \"" + tt.server + "\"\n"
			}
			if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			b := &Bridge{Dir: dir, Hosts: []string{host}, Tokens: fixedTokens{now.Add(12 * time.Hour)}, Now: func() time.Time { return now }}
			if tt.declared {
				b.Declared = []string{host}
			}
			_, err := b.Refresh(ctx, host)
			after := readString(t, file)
			if tt.wantErr == "" {
				if err != nil || !HasBlock([]byte(after)) {
					t.Fatalf("Refresh = %v, file:\n%s\nwant the entry written", err, after)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || b.State()[0].Err == "" {
				t.Fatalf("Refresh = %v (state %+v), want an error containing %q", err, b.State(), tt.wantErr)
			}
			if after != content || strings.Contains(after, "secret-token") {
				t.Fatalf("file changed although the server is not the registry:\n%s", after)
			}

			// An entry written while the file still named the registry is taken out once it no
			// longer does.
			withEntry, err := Merge([]byte("server = \"https://"+host+"\"\n"), "https://"+host, "Basic c2VjcmV0LXRva2Vu")
			if err != nil {
				t.Fatal(err)
			}
			moved := strings.Replace(string(withEntry), "server = \"https://"+host+"\"", "server = \""+tt.server+"\"", 1)
			if err := os.WriteFile(file, []byte(moved), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Refresh(ctx, host); err == nil {
				t.Fatal("Refresh wrote for a server that is not the registry")
			}
			if after := readString(t, file); HasBlock([]byte(after)) || strings.Contains(after, "c2VjcmV0LXRva2Vu") {
				t.Fatalf("the old entry with the token is still there:\n%s", after)
			}
		})
	}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A temporary copy a crash left next to hosts.toml (it may hold an old token) is gone after the
// next refresh.
func TestRefreshRemovesLeftoverTokens(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	leftover := filepath.Join(dir, host, ".hosts.toml.tmp-42")
	if err := os.MkdirAll(leftover, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(leftover, "hosts.toml"), []byte("old-secret-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &Bridge{Dir: dir, Hosts: []string{host}, Tokens: fixedTokens{now.Add(12 * time.Hour)}, Now: func() time.Time { return now }}
	if _, err := b.Refresh(testutil.Context(testutil.QuietLogger()), host); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover still there (%v)", err)
	}
}

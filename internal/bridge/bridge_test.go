package bridge

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/backoff"
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

// The host's directory, or its hosts.toml, being a symbolic link is refused: certs.d/<host>
// linked to _default would hand the token to every registry containerd pulls from, a link
// elsewhere would put it where others may read it. Nothing is written where the link points,
// and the state (check's credential-bridge row) says why.
func TestRefreshRefusesSymbolicLinks(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir, outside string) (target string)
	}{
		{name: "host directory linked to _default", setup: func(t *testing.T, dir, _ string) string {
			mustWrite(t, filepath.Join(dir, "_default", "hosts.toml"), "# every registry\n")
			mustSymlink(t, "_default", filepath.Join(dir, host))
			return filepath.Join(dir, "_default", "hosts.toml")
		}},
		{name: "host directory linked elsewhere", setup: func(t *testing.T, dir, outside string) string {
			mustSymlink(t, outside, filepath.Join(dir, host))
			return filepath.Join(outside, "hosts.toml")
		}},
		{name: "hosts.toml linked elsewhere", setup: func(t *testing.T, dir, outside string) string {
			mustWrite(t, filepath.Join(outside, "hosts.toml"), "server = \"https://"+host+"\"\n")
			mustSymlink(t, filepath.Join(outside, "hosts.toml"), filepath.Join(dir, host, "hosts.toml"))
			return filepath.Join(outside, "hosts.toml")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, outside := t.TempDir(), t.TempDir()
			target := tc.setup(t, dir, outside)
			before, _ := os.ReadFile(target)
			var outcomes []string
			b := &Bridge{Dir: dir, Hosts: []string{host}, Tokens: fixedTokens{now.Add(12 * time.Hour)}, Now: func() time.Time { return now },
				OnWrite: func(_, outcome string) { outcomes = append(outcomes, outcome) }}
			_, err := b.Refresh(testutil.Context(testutil.QuietLogger()), host)
			if err == nil || !strings.Contains(err.Error(), "symbolic link") || !strings.Contains(err.Error(), filepath.Join(dir, host)) {
				t.Fatalf("Refresh = %v, want a refusal naming the link", err)
			}
			if after, _ := os.ReadFile(target); string(after) != string(before) {
				t.Fatalf("written through the link into %s:\n%s", target, after)
			}
			if st := b.State()[0]; !strings.Contains(st.Err, "symbolic link") {
				t.Errorf("state %+v: want the refusal", st)
			}
			if len(outcomes) != 1 || outcomes[0] != "error" {
				t.Errorf("outcomes %v, want [error]", outcomes)
			}
			// Removal (the bridge turned off) does not go through the link either.
			if err := Remove(dir, []string{host}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
				t.Errorf("Remove through a link = %v, want a refusal", err)
			}
			if after, _ := os.ReadFile(target); string(after) != string(before) {
				t.Fatalf("Remove changed %s:\n%s", target, after)
			}
		})
	}
}

// A failure that repeats is logged once, not at every retry; its end is logged too.
func TestRunLogsAFailureOncePerChange(t *testing.T) {
	l, hook := testutil.CaptureLogger()
	ctx, cancel := context.WithCancel(testutil.Context(l))
	defer cancel()
	tokens := &scriptedTokens{errs: []error{errDenied, errDenied, errDenied, errDenied, errThrottled, errThrottled, nil}}
	b := &Bridge{Dir: t.TempDir(), Hosts: []string{host}, Tokens: tokens, Retry: backoff.Policy{Initial: time.Millisecond, Max: time.Millisecond}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Run(ctx)
	}()
	testutil.WaitFor(t, "the entry written after the failures", func() bool { return !b.State()[0].Written.IsZero() })
	cancel()
	<-done
	var failures, recovered int
	for _, e := range hook.AllEntries() {
		switch {
		case strings.HasPrefix(e.Message, "credential bridge not refreshed"):
			failures++
		case e.Message == "credential bridge refreshed again":
			recovered++
		}
	}
	if failures != 2 || recovered != 1 {
		t.Errorf("logged %d failures and %d recoveries for 6 failed refreshes with 2 errors, want 2 and 1", failures, recovered)
	}
}

var (
	errDenied    = errors.New("AccessDeniedException")
	errThrottled = errors.New("ThrottlingException")
)

// scriptedTokens fails with errs in turn, then hands out a token.
type scriptedTokens struct {
	mu   sync.Mutex
	errs []error
}

func (s *scriptedTokens) Credentials(context.Context, string) (ecr.Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) > 0 {
		err := s.errs[0]
		s.errs = s.errs[1:]
		if err != nil {
			return ecr.Credentials{}, err
		}
	}
	return ecr.Credentials{Username: "AWS", Password: "secret-token", ExpiresAt: time.Now().Add(12 * time.Hour)}, nil
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// check's look at the files (beside the running plugin, without a token) says what stands in
// the way of the entry.
func TestInspect(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr string // "" for nothing in the way
	}{
		{name: "nothing yet", setup: func(*testing.T, string) {}},
		{name: "the registry itself", setup: func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, host, "hosts.toml"), "server = \"https://"+host+"\"\n")
		}},
		{name: "a cache in clear text", setup: func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, host, "hosts.toml"), "server = \"http://cache.example.net:5000\"\n")
		}, wantErr: "not to the ECR registry itself"},
		{name: "host directory linked", setup: func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, "_default", "hosts.toml"), "")
			mustSymlink(t, "_default", filepath.Join(dir, host))
		}, wantErr: "symbolic link"},
		{name: "_default would be hidden", setup: func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, "_default", "hosts.toml"), "")
		}, wantErr: "_default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			b := &Bridge{Dir: dir, Hosts: []string{host}, Tokens: fixedTokens{}}
			b.Inspect(host)
			st := b.State()[0]
			if tc.wantErr == "" && st.Err != "" || !strings.Contains(st.Err, tc.wantErr) {
				t.Errorf("state %+v, want an error containing %q", st, tc.wantErr)
			}
		})
	}
}

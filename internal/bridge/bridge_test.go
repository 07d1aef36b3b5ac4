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

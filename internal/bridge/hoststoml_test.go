package bridge

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker/config"

	"github.com/sandbox-guard/sandbox-guard/internal/atomicfile"
)

const (
	host = "602401143452.dkr.ecr.us-west-2.amazonaws.com"
	auth = "Basic QVdTOnRva2Vu"
)

func TestMerge(t *testing.T) {
	mirrors := `# Spegel mirror first
server = "https://` + host + `"

[host."http://127.0.0.1:30020"]
  capabilities = ["pull", "resolve"]
  # local mirror, tried first
`
	tests := []struct {
		name     string
		existing string
		wantErr  string
		keep     []string // substrings of existing that must survive
		order    []string // hosts containerd must try, in order
	}{
		{name: "no file", order: []string{"https://" + host + " auth", "https://" + host}},
		{name: "server only", existing: `server = "https://` + host + `"` + "\n", order: []string{"https://" + host + " auth", "https://" + host}},
		{name: "with mirrors and comments", existing: mirrors, keep: []string{"# Spegel mirror first", "# local mirror, tried first"},
			order: []string{"http://127.0.0.1:30020", "https://" + host + " auth", "https://" + host}},
		{name: "top-level header kept", existing: `server = "https://` + host + `"` + "\n[header]\n  X-Trace = [\"1\"]\n", keep: []string{"X-Trace"},
			order: []string{"https://" + host + " auth", "https://" + host}},
		{name: "plain-http server", existing: "server = \"http://127.0.0.1:5000\"\n", order: []string{"http://127.0.0.1:5000 auth", "http://127.0.0.1:5000"}},
		{name: "malformed", existing: "server = \n[[[", wantErr: "not valid TOML"},
		{name: "same-URL host of the operator's own", existing: `server = "https://` + host + `"` + "\n[host.\"https://" + host + "\"]\n  capabilities = [\"pull\"]\n", wantErr: "entry of its own"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Merge([]byte(tt.existing), "https://"+host, auth)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Merge error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range tt.keep {
				if !strings.Contains(string(out), k) {
					t.Errorf("merged file lost %q:\n%s", k, out)
				}
			}
			if !strings.HasPrefix(string(out), strings.TrimSuffix(tt.existing, "\n")) {
				t.Errorf("existing content not kept byte for byte at the top:\n%s", out)
			}
			assertHosts(t, out, tt.order)

			// Merging again with a new token replaces the entry instead of adding one.
			again, err := Merge(out, "https://"+host, "Basic bmV3")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Count(string(again), beginMarker) != 1 || !strings.Contains(string(again), "Basic bmV3") || strings.Contains(string(again), auth) {
				t.Errorf("second merge did not replace the entry:\n%s", again)
			}

			// Removing takes out exactly what was added.
			r, err := removeBlock(again)
			if err != nil {
				t.Fatal(err)
			}
			if tt.existing == "" {
				if !r.Empty() {
					t.Errorf("a file the bridge created is not reported empty after removal:\n%s", r.content)
				}
			} else if strings.TrimSpace(string(r.content)) != strings.TrimSpace(tt.existing) {
				t.Errorf("after removal:\n%s\nwant:\n%s", r.content, tt.existing)
			}
		})
	}
}

// assertHosts loads the file through containerd's own hosts.toml loader and checks the order
// in which containerd would try hosts and which of them carry the Authorization header.
func assertHosts(t *testing.T, content []byte, want []string) {
	t.Helper()
	dir := t.TempDir()
	h := "registry.example"
	if err := os.MkdirAll(filepath.Join(dir, h), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, h, "hosts.toml"), content, 0o600); err != nil {
		t.Fatal(err)
	}
	hosts, err := config.ConfigureHosts(context.Background(), config.HostOptions{HostDir: config.HostDirFromRoot(dir)})(h)
	if err != nil {
		t.Fatalf("containerd cannot load the file: %v\n%s", err, content)
	}
	var got []string
	for _, rh := range hosts {
		s := rh.Scheme + "://" + rh.Host
		if a := rh.Header.Get("Authorization"); a != "" {
			if a != auth {
				t.Errorf("host %s carries Authorization %q", s, a)
			}
			s += " auth"
		}
		got = append(got, s)
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("containerd tries %v, want %v\n%s", got, want, content)
	}
}

func TestRemoveLeavesOtherFilesAlone(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "docker.io", "hosts.toml")
	if err := os.MkdirAll(filepath.Dir(other), 0o755); err != nil {
		t.Fatal(err)
	}
	orig := "server = \"https://registry-1.docker.io\"\n"
	if err := os.WriteFile(other, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	created, _ := Merge(nil, "https://"+host, auth)
	if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(filepath.Join(dir, host, "hosts.toml"), created, 0o600); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, host, "hosts.toml")); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if err := Remove(dir, []string{host, "docker.io"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, host)); !os.IsNotExist(err) {
		t.Errorf("the bridge's own file and directory should be gone: %v", err)
	}
	if b, _ := os.ReadFile(other); string(b) != orig {
		t.Errorf("unrelated file changed: %q", b)
	}
}

package supervisor

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/ecr/ecrtest"
)

// The bridge takes its entry out of every hosts.toml it ever wrote, not only those of the
// current configuration: reconfigured from host A to host B, A's file loses the token; and a
// new process (a restart) with the bridge off removes B's entry although its configuration no
// longer names B, from the list kept in the state directory.
func TestBridgeRemovesTheEntryOfEveryHostItWrote(t *testing.T) {
	const token = "bridge-test-token"
	srv := ecrtest.NewServer(ecrtest.Config{Password: token})
	defer srv.Close()
	dir := t.TempDir()
	creds := filepath.Join(dir, "aws-credentials")
	if err := os.WriteFile(creds, []byte("[default]\naws_access_key_id = AKIDTEST\naws_secret_access_key = not-a-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	certs, state := filepath.Join(dir, "certs.d"), filepath.Join(dir, "state")
	if err := os.Mkdir(certs, 0o755); err != nil {
		t.Fatal(err)
	}
	const hostA, hostB = "registry-a.test", "registry-b.test"
	configFor := func(image string, bridge bool) *config.Config {
		t.Helper()
		doc := fmt.Sprintf(`preset: none
sandboxImage: %s/eks/pause:3.10
stateDir: %s
metrics: {address: ""}
keeper: {localCopy: false}
containerd: {configFile: %s, address: %s, registryConfigPath: %s}
ecr: {registries: {%s: us-west-2, %s: us-west-2}, endpoint: %s, sharedCredentialsFiles: [%s], credentialBridge: %v}
`, image, state, filepath.Join(dir, "absent.toml"), filepath.Join(dir, "absent.sock"), certs, hostA, hostB, srv.URL, creds, bridge)
		cfg, err := config.Parse([]byte(doc), "test")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	hasToken := func(host string) bool {
		b, _ := os.ReadFile(filepath.Join(certs, host, "hosts.toml"))
		return strings.Contains(string(b), "Authorization")
	}

	ctx, _ := testContext(t)
	s := New("test", nil)
	if err := s.Apply(ctx, configFor(hostA, true), Runtime{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the entry for A", func() bool { return hasToken(hostA) })
	if err := s.Apply(ctx, configFor(hostB, true), Runtime{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the entry for B, and A's gone", func() bool { return hasToken(hostB) && !hasToken(hostA) })
	if _, err := os.Stat(filepath.Join(certs, hostA)); !os.IsNotExist(err) {
		t.Errorf("the file the bridge created for A is still there (%v)", err)
	}
	s.Stop()

	restarted := New("test", nil)
	defer restarted.Stop()
	if err := restarted.Apply(ctx, configFor(hostA, false), Runtime{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B's entry gone after a restart with the bridge off", func() bool { return !hasToken(hostB) })
	if hasToken(hostA) {
		t.Error("the bridge off wrote an entry for A")
	}
}

// sandbox_guard_credential_bridge_effective, from a running supervisor: 1 once the entry is
// written into a hosts directory containerd reads; 0 for an entry written fine into one it does
// not read (two config_path directories on 2.x, whose transfer service reads none); no series
// with the bridge off or with no ECR host to write for.
func TestBridgeEffectiveMetric(t *testing.T) {
	srv := ecrtest.NewServer(ecrtest.Config{Password: "metric-test-token"})
	defer srv.Close()
	const host = "registry-a.test"
	tests := []struct {
		name   string
		image  string // the sandbox image
		bridge bool
		dirs   int    // config_path directories in containerd's configuration
		want   string // the series' value; "" absent
	}{
		{"effective", host + "/eks/pause:3.10", true, 1, "1"},
		{"written but not read by containerd", host + "/eks/pause:3.10", true, 2, "0"},
		{"bridge off", host + "/eks/pause:3.10", false, 1, ""},
		{"no ECR host", "registry.example/eks/pause:3.10", true, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			creds := filepath.Join(dir, "aws-credentials")
			if err := os.WriteFile(creds, []byte("[default]\naws_access_key_id = AKIDTEST\naws_secret_access_key = not-a-secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			var dirs []string
			for i := range tt.dirs {
				d := filepath.Join(dir, fmt.Sprintf("certs%d.d", i))
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
				dirs = append(dirs, d)
			}
			ctrCfg := filepath.Join(dir, "config.toml")
			if err := os.WriteFile(ctrCfg, []byte(fmt.Sprintf("version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = %q\n",
				strings.Join(dirs, ":"))), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse([]byte(fmt.Sprintf(`preset: none
sandboxImage: %s
stateDir: %q
metrics: {address: "127.0.0.1:0"}
keeper: {localCopy: false}
containerd: {configFile: %q, address: %q}
ecr: {registries: {%s: us-west-2}, endpoint: %s, sharedCredentialsFiles: [%q], credentialBridge: %v}
`, tt.image, filepath.Join(dir, "state"), ctrCfg, filepath.Join(dir, "absent.sock"), host, srv.URL, creds, tt.bridge)), "test")
			if err != nil {
				t.Fatal(err)
			}
			ctx, _ := testContext(t)
			s := New("test", nil)
			defer s.Stop()
			if err := s.Apply(ctx, cfg, Runtime{Name: "containerd", Version: "v2.2.9"}); err != nil {
				t.Fatal(err)
			}
			gauge := func() (string, bool) {
				resp, err := http.Get("http://" + s.srv.Addr() + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				for line := range strings.Lines(string(b)) {
					if v, ok := strings.CutPrefix(strings.TrimSpace(line), `sandbox_guard_credential_bridge_effective{host="`+host+`"} `); ok {
						return v, true
					}
				}
				return "", false
			}
			written := func() bool {
				b, _ := os.ReadFile(filepath.Join(dirs[0], host, "hosts.toml"))
				return strings.Contains(string(b), "Authorization")
			}
			planned := func() bool { st := s.gen.Load().images.Load(); return st != nil && st.plan != nil }
			switch tt.want {
			case "1":
				waitFor(t, "the gauge at 1", func() bool { v, _ := gauge(); return v == "1" })
			case "0":
				waitFor(t, "the entry written", written)
				if v, ok := gauge(); v != "0" {
					t.Errorf("gauge %q (present %v), want 0: containerd does not read the entry", v, ok)
				}
			default:
				waitFor(t, "the plan", planned)
				if v, ok := gauge(); ok {
					t.Errorf("gauge %q, want no series", v)
				}
			}
		})
	}
}

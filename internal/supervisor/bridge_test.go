package supervisor

import (
	"fmt"
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

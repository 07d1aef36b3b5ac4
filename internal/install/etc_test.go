package install

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"sigs.k8s.io/yaml"

	"github.com/sandbox-guard/sandbox-guard/etc"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
)

// The shipped plugin configuration must load, and must document every gate key.
func TestShippedPluginConfigParses(t *testing.T) {
	cfg, err := config.Parse(etc.PluginConfig, "etc/nri/conf.d/10-sandbox-guard.conf")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != config.ModeWarn || cfg.Preset != config.PresetEKS {
		t.Errorf("mode %q preset %q, want warn and eks", cfg.Mode, cfg.Preset)
	}
	// Apart from mode, the file states the defaults: parsing it must give Default(), every key.
	def := config.Default()
	def.Mode = cfg.Mode
	if got, want := fmt.Sprintf("%+v", normalize(cfg)), fmt.Sprintf("%+v", normalize(def)); got != want {
		t.Errorf("the shipped file does not state the defaults:\n got %s\nwant %s", got, want)
	}
	text := string(etc.PluginConfig)
	for _, key := range []string{"mode:", "log:", "file:", "level:", "format:", "maxSizeMB:", "maxBackups:",
		"exempt:", "namespaces:", "podSelector:", "preset:", "checks:", "disableChecks:", "refresh:",
		"interval:", "maxBackoff:", "timeout:", "settleTime:",
		"file:", "iptables:", "nftables:", "cni:", "http:", "socket:", "hint:",
		"sandboxImage:", "sandboxImageFallbacks:", "pinImages:", "stateDir:", "keeper:", "reconcileInterval:",
		"localCopy:", "pullTimeout:", "containerd:", "address:", "namespace:", "snapshotter:", "configFile:",
		"registryConfigPath:", "eks:", "region:", "fips:", "pauseVersion:", "ecr:", "registries:", "endpoint:",
		"endpoints:", "sharedConfigFiles:", "sharedCredentialsFiles:", "profile:", "credentialBridge:", "metrics:"} {
		if !strings.Contains(text, key) {
			t.Errorf("etc/nri/conf.d/10-sandbox-guard.conf does not mention %q", key)
		}
	}
	for _, p := range config.Presets() {
		if !strings.Contains(text, "#   "+p+" ") {
			t.Errorf("preset %q is not described", p)
		}
	}
}

// RenderDropInVersion("/") is the shipped file, and the drop-ins set exactly the NRI table.
func TestRenderDropIn(t *testing.T) {
	for _, tc := range []struct {
		major   int
		shipped []byte
		version int
	}{{1, etc.DropIn17, 2}, {2, etc.DropIn2, 3}, {2, etc.DropIn23, 4}} {
		got, err := RenderDropInVersion(tc.version, "/")
		if err != nil || !bytes.Equal(got, tc.shipped) {
			t.Fatalf("RenderDropInVersion(%d, /) = %v, not the shipped file", tc.version, err)
		}
		var doc map[string]any
		if err := toml.Unmarshal(got, &doc); err != nil {
			t.Fatal(err)
		}
		if len(doc) != 2 || doc["version"] != int64(tc.version) {
			t.Errorf("major %d: top-level keys %v, want only version = %d and plugins", tc.major, keys(doc), tc.version)
		}
		plugins, _ := doc["plugins"].(map[string]any)
		if len(plugins) != 1 || plugins[containerdconfig.PluginNRI] == nil {
			t.Errorf("major %d: plugin tables %v, want only %s (containerd 1.7 replaces every table a drop-in names)", tc.major, keys(plugins), containerdconfig.PluginNRI)
		}

		dir := t.TempDir()
		got, err = RenderDropInVersion(tc.version, dir)
		if err != nil {
			t.Fatal(err)
		}
		nri := loadNRI(t, tc.major, got)
		want := containerdconfig.NRI{SocketPath: dir + NRISocket, PluginPath: dir + PluginDir, PluginConfigPath: dir + ConfigDir,
			RegistrationTimeout: containerdconfig.DefaultNRIRegistrationTimeout, RequestTimeout: containerdconfig.DefaultNRIRequestTimeout}
		nri.DisabledReason = ""
		if nri != want {
			t.Errorf("major %d with paths root %s: NRI %+v, want %+v", tc.major, dir, nri, want)
		}
		if bytes.Count(got, []byte(dir)) != 3 {
			t.Errorf("major %d: want exactly the three paths prefixed:\n%s", tc.major, got)
		}
	}
	for _, bad := range []struct {
		version int
		root    string
	}{{1, "/"}, {5, "/"}, {3, "relative"}, {4, `/tmp/a"b`}, {2, "/tmp/a\nb"}} {
		if _, err := RenderDropInVersion(bad.version, bad.root); err == nil {
			t.Errorf("RenderDropInVersion(%d, %q) succeeded", bad.version, bad.root)
		}
	}
	// RenderDropIn by major version: what install writes without knowing the main
	// configuration's version.
	for major, shipped := range map[int][]byte{1: etc.DropIn17, 2: etc.DropIn2} {
		if got, err := RenderDropIn(major, "/"); err != nil || !bytes.Equal(got, shipped) {
			t.Errorf("RenderDropIn(%d, /) = %v, not the shipped file", major, err)
		}
	}
	if _, err := RenderDropIn(3, "/"); err == nil {
		t.Error("RenderDropIn(3, /) succeeded")
	}
	// The variants differ in their version line and comments only.
	strip := func(b []byte) string {
		var out []string
		for line := range strings.Lines(string(b)) {
			if !strings.HasPrefix(strings.TrimSpace(line), "#") && !strings.HasPrefix(line, "version = ") {
				out = append(out, strings.ReplaceAll(line, `"`, "'"))
			}
		}
		return strings.Join(out, "")
	}
	if strip(etc.DropIn2) != strip(etc.DropIn23) || strip(etc.DropIn2) != strip(etc.DropIn17) {
		t.Errorf("the drop-in variants set different keys:\n%s\n%s\n%s", strip(etc.DropIn17), strip(etc.DropIn2), strip(etc.DropIn23))
	}
}

// The AL2023 example's snippet, merged into nodeadm's generated configuration (version 2 for
// containerd 1.7 AMIs, 3 for 2.x, 4 should nodeadm write containerd 2.3's format), switches NRI
// on with the plugin's directories.
func TestAL2023Example(t *testing.T) {
	var nc struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			Containerd struct {
				Config string `json:"config"`
			} `json:"containerd"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(etc.AL2023NodeConfig, &nc); err != nil {
		t.Fatal(err)
	}
	if nc.APIVersion != "node.eks.aws/v1alpha1" || nc.Kind != "NodeConfig" {
		t.Fatalf("apiVersion %q kind %q", nc.APIVersion, nc.Kind)
	}
	var doc map[string]any
	if err := toml.Unmarshal([]byte(nc.Spec.Containerd.Config), &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc["version"]; ok || len(doc) != 1 {
		t.Errorf("the snippet sets %v; want only the plugins table (version belongs to nodeadm)", keys(doc))
	}
	for _, tc := range []struct{ major, version int }{{1, 2}, {2, 3}, {2, 4}} {
		// nodeadm merges the snippet into its template; with the template lacking an NRI table,
		// that is the same as appending it.
		main := fmt.Sprintf("version = %d\n%s", tc.version, nc.Spec.Containerd.Config)
		nri := loadNRI(t, tc.major, []byte(main))
		if nri.Disabled || nri.PluginPath != PluginDir || nri.PluginConfigPath != ConfigDir || nri.SocketPath != NRISocket {
			t.Errorf("containerd major %d: NRI %+v", tc.major, nri)
		}
	}
}

// loadNRI reads a single containerd config file with containerdconfig.
func loadNRI(t *testing.T, major int, data []byte) containerdconfig.NRI {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := containerdconfig.LoadWithOptions(f, containerdconfig.Options{Major: major})
	if err != nil {
		t.Fatal(err)
	}
	return info.NRI
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// normalize makes empty and nil collections compare equal (the file writes `[]` and `{}`).
func normalize(c *config.Config) config.Config {
	n := *c
	if len(n.Checks) == 0 {
		n.Checks = nil
	}
	if len(n.DisableChecks) == 0 {
		n.DisableChecks = nil
	}
	if len(n.Exempt.Namespaces) == 0 {
		n.Exempt.Namespaces = nil
	}
	if n.Exempt.PodSelector != nil && len(n.Exempt.PodSelector.MatchLabels) == 0 && len(n.Exempt.PodSelector.MatchExpressions) == 0 {
		n.Exempt.PodSelector = nil
	}
	if len(n.SandboxImageFallbacks) == 0 {
		n.SandboxImageFallbacks = nil
	}
	if len(n.PinImages) == 0 {
		n.PinImages = nil
	}
	if len(n.ECR.Registries) == 0 {
		n.ECR.Registries = nil
	}
	if len(n.ECR.Endpoints) == 0 {
		n.ECR.Endpoints = nil
	}
	if len(n.ECR.SharedConfigFiles) == 0 {
		n.ECR.SharedConfigFiles = nil
	}
	if len(n.ECR.SharedCredentialsFiles) == 0 {
		n.ECR.SharedCredentialsFiles = nil
	}
	return n
}

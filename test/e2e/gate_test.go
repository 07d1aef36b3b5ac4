package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// markerConfig is a plugin configuration with one file check on <node dir>/ready.
func markerConfig(mode string) func(n *harness.Node) string {
	return func(n *harness.Node) string {
		return fmt.Sprintf(`mode: %s
%spreset: none
refresh: {interval: 200ms}
exempt:
  namespaces: [trusted-system]
  podSelector: {matchLabels: {sandbox-guard.io/exempt: "true"}}
checks:
  - name: marker
    file: {path: %s}
    hint: the test has not written its marker yet
`, mode, n.PluginBase(), filepath.Join(n.Dir, "ready"))
	}
}

func TestPreRegisteredGateRejectsUntilCheckPasses(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{PluginConfig: markerConfig("enforce")})

		_, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
		if err == nil {
			t.Fatal("runp succeeded while the marker check fails")
		}
		for _, want := range []string{"sandbox-guard:", "default/web-1", "marker:", "does not exist", "kubelet will retry"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("rejection %q does not contain %q", err, want)
			}
		}

		// The network pods that make a node ready run on the host network: never gated.
		id := n.CRI.MustRunP(harness.Pod{Name: "aws-node-x", Namespace: "kube-system", HostNetwork: true})
		n.CRI.Remove(id)
		// Exemptions by namespace and by label; a pod matching neither is still gated.
		id = n.CRI.MustRunP(harness.Pod{Name: "agent", Namespace: "trusted-system"})
		n.CRI.Remove(id)
		id = n.CRI.MustRunP(harness.Pod{Name: "labelled", Labels: map[string]string{"sandbox-guard.io/exempt": "true"}})
		n.CRI.Remove(id)
		if _, err := n.CRI.RunP(harness.Pod{Name: "other", Labels: map[string]string{"sandbox-guard.io/exempt": "no"}}); err == nil {
			t.Fatal("a pod matching no exemption was admitted while the check fails")
		}

		if err := os.WriteFile(filepath.Join(n.Dir, "ready"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 5*time.Second, "runp admitted once the marker exists", func() error {
			id, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
			if err == nil {
				n.CRI.Remove(id)
			}
			return err
		})
		if log := readFile(t, n.PluginLog); !strings.Contains(log, "pod=default/web-1") {
			t.Errorf("plugin log does not record the rejected pod:\n%s", log)
		}
	})
}

func TestWarnModeAdmitsAndLogs(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{PluginConfig: markerConfig("warn")})
		id := n.CRI.MustRunP(harness.Pod{Name: "web-2"})
		n.CRI.Remove(id)
		harness.Eventually(t, 5*time.Second, "warn log line", func() error {
			log := readFile(t, n.PluginLog)
			if !strings.Contains(log, "enforce would reject") || !strings.Contains(log, "default/web-2") {
				return fmt.Errorf("plugin log lacks the would-reject line:\n%s", log)
			}
			return nil
		})
	})
}

func TestPreRegisteredBadConfigAdmitsAndNamesKey(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		var cfg string
		n := harness.StartNode(t, env, c, harness.NodeOptions{PluginConfig: func(n *harness.Node) string {
			cfg = markerConfig("enforce")(n) + "refreshEvery: 5s\n"
			return cfg
		}})
		// containerd runs on and, with the gate off, admits the pod although the marker is missing.
		id := n.CRI.MustRunP(harness.Pod{Name: "web-3"})
		n.CRI.Remove(id)
		if !n.Running() {
			t.Fatal("containerd exited")
		}
		harness.Eventually(t, 5*time.Second, "plugin log names the bad key", func() error {
			log := readFile(t, n.PluginLog)
			if !strings.Contains(log, "refreshEvery") || !strings.Contains(log, "gate off") {
				return fmt.Errorf("plugin log does not name the key:\n%s", log)
			}
			return nil
		})

		// The commands refuse the same file, naming the key.
		file := filepath.Join(n.Dir, "bad.yaml")
		if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"check", "--config", file}, {"run", "--config", file, "--nri-socket", n.NRISocket}} {
			out, err := exec.Command(env.Plugin, args...).CombinedOutput()
			code := -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != 2 || !strings.Contains(string(out), "refreshEvery") || !strings.Contains(string(out), file) {
				t.Errorf("sandbox-guard %s: exit %d, output %q; want exit 2 naming the key and the file", args[0], code, out)
			}
		}
	})
}

func TestExternalPluginReconnectsAfterContainerdRestart(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{})
		p := n.StartExternalPlugin(markerConfig("enforce")(n))
		p.WaitConnected(1)
		if _, err := n.CRI.RunP(harness.Pod{Name: "web-4"}); err == nil || !strings.Contains(err.Error(), "sandbox-guard:") {
			t.Fatalf("runp before restart: %v, want a sandbox-guard rejection", err)
		}
		n.Restart()
		p.WaitConnected(2)
		if _, err := n.CRI.RunP(harness.Pod{Name: "web-5"}); err == nil || !strings.Contains(err.Error(), "default/web-5") {
			t.Fatalf("runp after restart: %v, want a sandbox-guard rejection", err)
		}
	})
}

// checkRow is one row of `sandbox-guard check -o json`.
type checkRow struct {
	Name, Detail string
	OK           bool
}

// checkRows parses `check -o json` into its rows by name.
func checkRows(t testing.TB, out []byte) map[string]checkRow {
	t.Helper()
	var rep struct {
		Checks []checkRow `json:"checks"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("check -o json: %v\n%s", err, out)
	}
	rows := map[string]checkRow{}
	for _, r := range rep.Checks {
		rows[r.Name] = r
	}
	return rows
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

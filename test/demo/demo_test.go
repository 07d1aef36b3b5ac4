// Package demo is `make demo`: a throwaway local node (containerd 2.x, runc, CNI, a registry and
// sandbox-guard pre-registered, the way a real node runs it) and a walk through what the plugin
// does, scenario by scenario. It is a test binary only to reuse the end-to-end harness.
package demo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// say prints to the terminal at once (the demo binary runs without go test's buffering).
func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func scenario(title string) { say("\n=== %s", title) }

func TestDemo(t *testing.T) {
	t.Setenv("REQUIRE_E2E", "1") // the demo must not silently do nothing
	env := harness.Load(t)
	c := env.Containerds[0]
	say("sandbox-guard demo: starting a throwaway node (%s, runc, CNI bridge, auth-protected registry) in its own network namespace...", c.Name)
	marker := ""
	n := harness.StartNode(t, env, c, harness.NodeOptions{PluginConfig: func(n *harness.Node) string {
		marker = filepath.Join(n.Dir, "network-ready")
		return fmt.Sprintf(`mode: enforce
%spreset: none
refresh: {interval: 200ms}
checks:
  - name: network-ready
    file: {path: %s}
    hint: the CNI agent writes this file once the node network is up
`, n.PluginBase(), marker)
	}})
	say("node up: containerd started sandbox-guard itself from %s (pre-registered), config from %s", n.PluginDir, n.PluginConfDir)

	scenario("1. the node network is not ready: a pod sandbox is refused early, with a reason")
	_, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
	if err == nil {
		t.Fatal("expected a rejection")
	}
	say("$ crictl runp web-1.json\n%s", excerpt(err.Error()))
	say("-> kubelet shows this line in the pod's FailedCreatePodSandBox event and retries later.")

	scenario("2. a host-network pod (e.g. aws-node, kube-proxy) is admitted: it is what makes the network ready")
	id := n.CRI.MustRunP(harness.Pod{Name: "aws-node-abcde", Namespace: "kube-system", HostNetwork: true})
	say("$ crictl runp aws-node.json (hostNetwork)\n%s\n-> admitted", id)
	n.CRI.Remove(id)

	scenario("3. the network becomes ready: the next attempt is admitted within about a second")
	start := time.Now()
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 5*time.Second, "admission", func() error {
		id, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
		if err == nil {
			say("$ crictl runp web-1.json\n%s\n-> admitted %v after the check started passing", id, time.Since(start).Round(10*time.Millisecond))
			n.CRI.Remove(id)
		}
		return err
	})

	scenario("what the plugin logged")
	for _, l := range strings.Split(strings.TrimSpace(readFile(n.PluginLog)), "\n") {
		if !strings.Contains(l, "from=nri") && (strings.Contains(l, "level=warn") || strings.Contains(l, "level=info")) {
			say("  %s", l)
		}
	}
	say("\ndemo finished: the node, its registry and network namespace are being removed.")
}

func excerpt(s string) string {
	i := strings.Index(s, "NRI RunPodSandbox failed")
	j := strings.Index(s, "kubelet will retry")
	if i < 0 || j < i {
		return s
	}
	return "... " + s[i:j+len("kubelet will retry")]
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

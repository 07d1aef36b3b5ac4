// Package demo is `make demo`: a throwaway local node (containerd 2.x, runc, CNI, an
// auth-protected registry standing in for private ECR, and sandbox-guard pre-registered, the way
// a real node runs it) and a walk through what the plugin does, scenario by scenario. It is a
// test binary only to reuse the end-to-end harness.
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
	say("sandbox-guard demo: starting a throwaway node (%s, runc, CNI bridge, a registry that needs credentials like private ECR, a stand-in for the ECR API) in its own network namespace...", c.Name)
	var fake *harness.FakeECR
	n := harness.StartNode(t, env, c, harness.NodeOptions{NoSandboxImage: true, PluginConfig: func(n *harness.Node) string {
		fake = n.StartFakeECR(12 * time.Hour)
		return n.PluginBase() + fake.PluginECRConfig(n) + fmt.Sprintf(`  credentialBridge: true         # lend containerd's own pulls the ECR token (hosts.toml)
mode: enforce
preset: eks                      # VPC CNI + kube-proxy (iptables mode), paths adapted below
disableChecks: [vpc-cni-ipamd]
refresh: {interval: 200ms}
sandboxImage: auto               # whatever containerd's CRI uses
checks:
  - name: cni-config
    cni: {confDir: %s, binDirs: [%s]}
    hint: the VPC CNI (aws-node) has not written its CNI config yet
`, n.CNIConfDir, n.Env.CNIBin)
	}})
	say("node up: containerd started sandbox-guard itself from %s (pre-registered), config from %s", n.PluginDir, n.PluginConfDir)

	scenario("1. the sandbox image is not on the node: sandbox-guard pulls it with an ECR token it gets itself, and pins it")
	n.WaitPinned(n.SandboxImage, 20*time.Second, "sandbox image present and pinned")
	st, _ := n.CRI.Image(n.SandboxImage)
	say("$ crictl inspecti %s\n  id %s, pinned: %v   (ECR API calls: %d; kubelet's image GC skips pinned images)", n.SandboxImage, short(st.ID), st.Pinned, fake.Calls())

	scenario("2. after a reboot: CNI config in place, but kube-proxy has not restored its iptables rules: pods are refused early")
	_, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
	if err == nil {
		t.Fatal("expected a rejection")
	}
	say("$ crictl runp web-1.json\n%s", excerpt(err.Error()))
	say("-> kubelet shows this line in the pod's FailedCreatePodSandBox event and retries later, instead of starting a pod that cannot connect.")
	checkOut, _ := n.NS.Command(env.Plugin, "check", "--config", filepath.Join(n.PluginConfDir, "10-sandbox-guard.conf")).Output()
	say("$ sandbox-guard check   (what an operator runs first; exit code 1: not ready)\n%s", strings.TrimRight(string(checkOut), "\n"))

	scenario("3. host-network pods (kube-proxy, aws-node) are admitted: they are what makes the network ready")
	id := n.CRI.MustRunP(harness.Pod{Name: "kube-proxy-abcde", Namespace: "kube-system", HostNetwork: true})
	say("$ crictl runp kube-proxy.json (hostNetwork)\n%s\n-> admitted", id)
	n.CRI.Remove(id)

	scenario("4. kube-proxy writes its rules: the next attempt is admitted")
	start := time.Now()
	n.NS.MustRun(t, "iptables-nft", "-t", "nat", "-N", "KUBE-SERVICES")
	say("$ iptables -t nat -N KUBE-SERVICES")
	harness.Eventually(t, 5*time.Second, "admission", func() error {
		id, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
		if err == nil {
			say("$ crictl runp web-1.json\n%s\n-> admitted %v after the rules appeared", id, time.Since(start).Round(10*time.Millisecond))
			n.CRI.Remove(id)
		}
		return err
	})

	scenario("5. image GC (or an operator) deletes the sandbox image: repaired within about a second, pinned again")
	if out, err := n.Ctr("images", "rm", n.SandboxImage); err != nil {
		t.Fatalf("ctr images rm: %v: %s", err, out)
	}
	start = time.Now()
	say("$ ctr -n k8s.io images rm %s", n.SandboxImage)
	n.WaitPinned(n.SandboxImage, 5*time.Second, "sandbox image present and pinned")
	say("-> present and pinned again after %v (containerd's image event triggered the repair; without it, containerd's own", time.Since(start).Round(time.Millisecond))
	say("   re-pull would fail with 401 Unauthorized: kubelet's credential provider never serves the sandbox image)")
	id = n.CRI.MustRunP(harness.Pod{Name: "web-2"})
	n.CRI.Remove(id)
	say("$ crictl runp web-2.json -> admitted")

	scenario("6. sandbox-guard is not running (crashed, or not started yet) and the image is deleted: containerd pulls it itself, with the bridged token")
	n.StopPreRegisteredPlugin()
	say("$ kill <sandbox-guard>   (containerd runs on without the plugin)")
	out, err := n.Ctr("images", "ls", "-q")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Fields(out) {
		if _, err := n.Ctr("images", "rm", name); err != nil {
			t.Fatal(err)
		}
	}
	say("$ ctr -n k8s.io images rm <every image>")
	id = n.CRI.MustRunP(harness.Pod{Name: "web-4", Namespace: "kube-system", HostNetwork: true})
	n.CRI.Remove(id)
	say("$ crictl runp web-4.json -> started: containerd read %s and sent the token itself", n.HostsToml())
	say("   (the entry is a same-URL [host] entry: when the token goes stale, ECR's 403 makes containerd fall back to the")
	say("    header-less server entry, so kubelet's own credentials work exactly as without the bridge)")

	scenario("7. a node configured with the wrong region's pause image (401/403/404 there): a fallback source rescues it")
	var fake2 *harness.FakeECR
	var fallback string
	n2 := harness.StartNode(t, env, c, harness.NodeOptions{NoSandboxImage: true, ConfiguredSandbox: "eu-central-1-account/eks/pause:3.10",
		PluginConfig: func(n *harness.Node) string {
			fake2 = n.StartFakeECR(12 * time.Hour)
			fallback = n.PushedImage
			return n.PluginBase() + fake2.PluginECRConfig(n) + fmt.Sprintf("mode: enforce\npreset: none\nsandboxImage: auto\nsandboxImageFallbacks: [%s]\n", fallback)
		}})
	say("containerd's sandbox image: %s (does not exist there)", n2.SandboxImage)
	n2.WaitPinned(n2.SandboxImage, 20*time.Second, "sandbox image present and pinned")
	say("-> %s pulled and tagged as %s (label io.cri-containerd.source=%s), pinned", fallback, n2.SandboxImage, fallback)
	id = n2.CRI.MustRunP(harness.Pod{Name: "web-3"})
	n2.CRI.Remove(id)
	say("$ crictl runp web-3.json -> admitted")

	scenario("what the plugin logged on the first node")
	for _, l := range strings.Split(strings.TrimSpace(readFile(n.PluginLog)), "\n") {
		if !strings.Contains(l, "from=nri") && (strings.Contains(l, "level=warn") || strings.Contains(l, "level=info")) {
			say("  %s", l)
		}
	}
	say("\ndemo finished: the nodes, their registries and network namespaces are being removed.")
}

func short(id string) string {
	if len(id) > 19 {
		return id[:19]
	}
	return id
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

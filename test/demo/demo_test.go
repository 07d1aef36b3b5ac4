// Package demo is `make demo`: a throwaway local node (containerd 2.x, runc, CNI, an
// auth-protected registry standing in for private ECR, and sandbox-guard pre-registered, the way
// a real node runs it) with a one-node Kubernetes cluster around it (etcd, API server,
// controllers, a kubelet on that containerd), and a walk through what the plugin does, scenario
// by scenario, told through kubectl where pods and events show it, and crictl or ctr for what
// happens on the node. It is a test binary only to reuse the end-to-end harness.
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
	say("sandbox-guard demo: starting a throwaway node (%s, runc, CNI bridge, a registry that needs credentials like private ECR, a stand-in for the ECR API)", c.Name)
	say("and a one-node Kubernetes cluster around it (etcd, API server, controllers, a kubelet on that containerd), all in a network namespace of its own...")
	begin := time.Now()
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
	k := harness.StartKube(t, n, harness.KubeOptions{})
	say("up in %.0fs: containerd started sandbox-guard itself from %s (pre-registered, config from %s); kubelet registered node %s",
		time.Since(begin).Seconds(), n.PluginDir, n.PluginConfDir, k.NodeName)
	web := n.Registry.PushApp(t, env, "demo/web", "1")
	for _, ns := range []string{"default", "kube-system"} {
		k.CreatePullSecret(ns, "registry") // for the pods' own image; the sandbox image gets nothing from kubelet
	}
	kubectl := func(args ...string) string {
		t.Helper()
		out := k.MustKubectl(args...)
		say("$ kubectl %s\n%s", strings.Join(args, " "), indent(out))
		return out
	}

	scenario("1. the sandbox image is not on the node: sandbox-guard pulls it with an ECR token it gets itself, and pins it")
	n.WaitPinned(n.SandboxImage, 20*time.Second, "sandbox image present and pinned")
	st, _ := n.CRI.Image(n.SandboxImage)
	say("$ crictl inspecti %s\n  id %s, pinned: %v   (ECR API calls: %d; kubelet's image GC skips pinned images)", n.SandboxImage, short(st.ID), st.Pinned, fake.Calls())

	scenario("2. after a reboot: CNI config in place, but kube-proxy has not restored its iptables rules: pods are refused early")
	k.Apply(fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      imagePullSecrets: [{name: registry}]
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 2
      containers: [{name: web, image: %s}]
`, web))
	say("$ kubectl apply -f web-deployment.yaml   (2 replicas)")
	pods := webPods(t, k, 2)
	k.WaitPodEvent("default", pods[0], "FailedCreatePodSandBox", 2*time.Minute, "sandbox-guard: pod default/"+pods[0]+" not started")
	kubectl("get", "pods", "-l", "app=web")
	kubectl("get", "events", "--field-selector", "reason=FailedCreatePodSandBox,involvedObject.name="+pods[0])
	say("-> the pods wait in ContainerCreating and kubelet retries them on its own, instead of starting containers that cannot connect and crash-loop.")
	checkOut, _ := n.NS.Command(env.Plugin, "check", "--config", filepath.Join(n.PluginConfDir, "10-sandbox-guard.conf")).Output()
	say("$ sandbox-guard check   (what an operator runs on the node first; exit code 1: not ready)\n%s", indent(string(checkOut)))

	scenario("3. host-network pods (kube-proxy, aws-node) are admitted: they are what makes the network ready")
	k.Apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: kube-proxy-demo, namespace: kube-system, labels: {app: kube-proxy-demo}}
spec:
  hostNetwork: true
  imagePullSecrets: [{name: registry}]
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 2
  containers: [{name: kube-proxy, image: %s}]
`, web))
	say("$ kubectl apply -f kube-proxy-pod.yaml   (hostNetwork: true)")
	k.WaitPodsReady("kube-system", "app=kube-proxy-demo", 1, 2*time.Minute)
	kubectl("get", "pods", "-n", "kube-system", "kube-proxy-demo")

	scenario("4. kube-proxy writes its rules: kubelet's next attempt is admitted, and no container ever crashed")
	n.NS.MustRun(t, "iptables-nft", "-t", "nat", "-N", "KUBE-SERVICES")
	start := time.Now()
	say("$ iptables -t nat -N KUBE-SERVICES")
	k.WaitPodsReady("default", "app=web", 2, 2*time.Minute)
	say("-> both pods Ready %.1fs after the rules appeared (kubelet's retry interval is the floor)", time.Since(start).Seconds())
	kubectl("get", "pods", "-l", "app=web")

	scenario("5. image GC (or an operator) deletes the sandbox image: repaired within about a second, pinned again")
	deleteSandboxImage(t, n, false)
	start = time.Now()
	say("$ ctr -n k8s.io images rm %s   (and its digest references)", n.SandboxImage)
	n.WaitPinned(n.SandboxImage, 5*time.Second, "sandbox image present and pinned")
	say("-> present and pinned again after %v (containerd's image event triggered the repair; without it, containerd's own", time.Since(start).Round(time.Millisecond))
	say("   re-pull would fail with 401 Unauthorized: kubelet's credentials never serve the sandbox image)")
	k.MustKubectl("scale", "deployment", "web", "--replicas", "3")
	say("$ kubectl scale deployment web --replicas 3")
	k.WaitPodsReady("default", "app=web", 3, 2*time.Minute)
	kubectl("get", "pods", "-l", "app=web")

	scenario("6. sandbox-guard is not running (crashed, or not started yet) and the image is deleted: containerd pulls it itself, with the bridged token")
	n.StopPreRegisteredPlugin()
	say("$ kill <sandbox-guard>   (containerd runs on without the plugin)")
	deleteSandboxImage(t, n, true)
	say("$ ctr -n k8s.io images rm %s   (and its digest references)", n.SandboxImage)
	k.MustKubectl("scale", "deployment", "web", "--replicas", "4")
	say("$ kubectl scale deployment web --replicas 4")
	k.WaitPodsReady("default", "app=web", 4, 2*time.Minute)
	kubectl("get", "pods", "-l", "app=web")
	say("-> the fourth pod started: containerd read %s and sent the token itself", n.HostsToml())
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
	say("(a second node, driven with crictl) containerd's sandbox image: %s (does not exist there)", n2.SandboxImage)
	n2.WaitPinned(n2.SandboxImage, 20*time.Second, "sandbox image present and pinned")
	say("-> %s pulled and tagged as %s (label io.cri-containerd.source=%s), pinned", fallback, n2.SandboxImage, fallback)
	id := n2.CRI.MustRunP(harness.Pod{Name: "web-3"})
	n2.CRI.Remove(id)
	say("$ crictl runp web-3.json -> admitted")

	scenario("what the plugin logged on the first node")
	for _, l := range strings.Split(strings.TrimSpace(readFile(n.PluginLog)), "\n") {
		if !strings.Contains(l, "from=nri") && (strings.Contains(l, "level=warn") || strings.Contains(l, "level=info")) {
			say("  %s", l)
		}
	}
	say("\ndemo finished in %.0fs: the cluster, the nodes, their registries and network namespaces are being removed.", time.Since(begin).Seconds())
}

// webPods waits until the Deployment web has count pods and returns their names.
func webPods(t *testing.T, k *harness.Kube, count int) []string {
	t.Helper()
	var names []string
	k.WaitFor(time.Minute, "the Deployment's pods", func() error {
		pods, err := k.Pods("default", "app=web")
		if err != nil {
			return err
		}
		names = names[:0]
		for _, p := range pods {
			names = append(names, p.Name)
		}
		if len(names) != count {
			return fmt.Errorf("%d pods", len(names))
		}
		return nil
	})
	return names
}

// deleteSandboxImage removes the sandbox image and its digest references, as image GC would;
// gone says to check that it is gone (not with the plugin running: it repairs at once).
func deleteSandboxImage(t *testing.T, n *harness.Node, gone bool) {
	t.Helper()
	st, err := n.CRI.Image(n.SandboxImage)
	if err != nil {
		t.Fatal(err)
	}
	repo := n.SandboxImage[:strings.LastIndex(n.SandboxImage, ":")] // host:port/eks/pause
	out, err := n.Ctr("images", "ls", "-q")
	if err != nil {
		t.Fatalf("ctr images ls: %v: %s", err, out)
	}
	for _, name := range strings.Fields(out) {
		if name == st.ID || strings.HasPrefix(name, repo+":") || strings.HasPrefix(name, repo+"@") {
			if out, err := n.Ctr("images", "rm", name); err != nil {
				t.Fatalf("ctr images rm %s: %v: %s", name, err, out)
			}
		}
	}
	if st, err := n.CRI.Image(n.SandboxImage); gone && (err != nil || st.Present) {
		t.Fatalf("sandbox image still present (%v) after deleting its references", err)
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

func short(id string) string {
	if len(id) > 19 {
		return id[:19]
	}
	return id
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

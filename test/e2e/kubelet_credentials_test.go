package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// TestKubeletSandboxImageCredentials is the 401 failure under a real kubelet: the sandbox image
// is in the auth registry, which stands for private ECR, and no kubelet credential provider is
// configured (none would help: kubelet passes credentials for a pod's images, never for the
// sandbox image, which containerd pulls by itself without any). The pods' own image comes with
// an imagePullSecret, as usual.
//   - control: nothing on the node gives containerd credentials: the pod's sandbox fails with
//     the registry's 401 in its FailedCreatePodSandBox events ("authorization failed: no basic
//     auth credentials");
//   - keeper: sandbox-guard pre-registered pulls and pins the image with its own ECR token: the
//     same pod starts at kubelet's next retry;
//   - control for the bridge: the plugin stopped and the image deleted (as by image GC): a new
//     pod fails with 401 again;
//   - bridge: with ecr.credentialBridge on, the plugin writes the token into hosts.toml; the
//     plugin stopped and the image deleted, containerd's own pull of the sandbox image sends it,
//     and a new pod starts at its first attempt.
func TestKubeletSandboxImageCredentials(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{NoSandboxImage: true})
		k := harness.StartKube(t, n, harness.KubeOptions{})
		fake := n.StartFakeECR(12 * time.Hour)
		app := n.Registry.PushApp(t, env, "e2e/app", "1")
		k.CreatePullSecret("default", "registry")
		config := func(bridge bool) string {
			return n.PluginBase() + fake.PluginECRConfig(n) + fmt.Sprintf("  credentialBridge: %v\nmode: enforce\npreset: none\nsandboxImage: auto\n", bridge)
		}
		// What containerd (1.7 and 2.x alike) says when the registry answers 401 and it has no
		// credentials to offer.
		unauthorized := func(pod string) corev1.Event {
			t.Helper()
			return k.WaitPodEvent("default", pod, "FailedCreatePodSandBox", 2*time.Minute, "Failed to create pod sandbox",
				fmt.Sprintf("failed to pull image %q", n.SandboxImage), "authorization failed: no basic auth credentials")
		}

		// Control: no keeper, no bridge.
		applyWebPod(k, "web-1", app)
		ev := unauthorized("web-1")
		t.Logf("%s, nothing on the node: %s: %s", c.Name, ev.Reason, ev.Message)

		// The keeper: containerd starts the plugin, which pulls and pins the image with its own
		// token; kubelet's next attempt finds it.
		n.InstallPlugin(config(false))
		n.Restart()
		started := time.Now()
		n.WaitPinned(n.SandboxImage, 30*time.Second, "the keeper pulls and pins the sandbox image")
		pinned := time.Since(started)
		k.WaitPodsReady("default", "app=web-1", 1, 3*time.Minute)
		t.Logf("%s, keeper: the sandbox image pinned %.1fs after containerd's start, web-1 Ready %.1fs after it (kubelet's retry); %d ECR token requests",
			c.Name, pinned.Seconds(), time.Since(started).Seconds(), fake.Calls())
		if fake.Calls() < 1 {
			t.Errorf("the fake ECR API was never asked for a token")
		}
		if strings.Contains(readFile(t, n.HostsToml()), "Authorization") {
			t.Fatalf("hosts.toml has an Authorization header with the bridge off:\n%s", readFile(t, n.HostsToml()))
		}

		// Control for the bridge: the plugin not running, the image gone.
		n.StopPreRegisteredPlugin()
		deleteSandboxImage(t, n)
		applyWebPod(k, "web-2", app)
		ev = unauthorized("web-2")
		t.Logf("%s, plugin stopped, image deleted, no bridge: %s: %s", c.Name, ev.Reason, ev.Message)
		// Gone before the plugin starts again: its keeper would start it, not the bridge.
		k.MustKubectl("delete", "pod", "web-2", "--wait", "--timeout", "2m")

		// The bridge: containerd's own pull gets the token from hosts.toml.
		n.WritePluginConfig(config(true))
		n.Restart()
		waitBridgeEntry(t, n)
		n.WaitPinned(n.SandboxImage, 30*time.Second, "the keeper pulls and pins the sandbox image")
		n.StopPreRegisteredPlugin()
		deleteSandboxImage(t, n)
		before := strings.Count(n.Registry.Log(t), "/v2/eks/pause/manifests/")
		applyWebPod(k, "web-3", app)
		k.WaitPodsReady("default", "app=web-3", 1, 2*time.Minute)
		if after := strings.Count(n.Registry.Log(t), "/v2/eks/pause/manifests/"); after <= before {
			t.Errorf("the registry saw no manifest request from containerd's own pull")
		}
		events, err := k.PodEvents("default", "web-3")
		must(t, err)
		if slices.ContainsFunc(events, func(e corev1.Event) bool { return e.Reason == "FailedCreatePodSandBox" }) {
			t.Errorf("web-3 failed a sandbox with the bridge in place: %+v", events)
		}
		if pids := preregisteredPids(n); len(pids) > 0 {
			t.Errorf("the plugin runs (pids %v): the pod did not start through the bridge alone", pids)
		}
		t.Logf("%s, plugin stopped, image deleted, bridge entry in hosts.toml: web-3 Ready at its first attempt", c.Name)
		// The token is in hosts.toml (mode 0600) only: not in the logs of kubelet or the plugin,
		// nor in any event.
		events2, err := k.Kubectl("get", "events", "-A", "-o", "yaml")
		must(t, err)
		for what, text := range map[string]string{"the events": events2, "kubelet's log": readFile(t, k.KubeletLog()),
			"containerd's log": readFile(t, n.LogFile), "the plugin's log": readFile(t, n.PluginLog)} {
			for _, secret := range []string{n.Registry.Password, base64Std("AWS:" + n.Registry.Password)} {
				if strings.Contains(text, secret) {
					t.Errorf("%s hold the token", what)
				}
			}
		}
	})
}

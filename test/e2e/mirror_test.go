package e2e

import (
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// The keeper pulls through a hosts.toml mirror the way CRI pulls with kubelet's credentials:
// the mirror (listed first, auth-protected like the ECR registry it fronts) answers 401 and gets
// the image registry's ECR token, so it serves the image and the registry itself is never asked,
// at the first pull and at a repair after deletion. CRI's own credentialed pull through the same
// hosts.toml is the control.
func TestKeeperPullsThroughMirrorWithImageCredentials(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		var mirror *harness.Registry
		var registryBefore int
		opts := harness.NodeOptions{BeforeStart: func(n *harness.Node) {
			mirror = n.StartMirrorRegistry()
			_, mirrored := mirror.PushPause(t, env, "eks/pause", "3.10")
			_, original := n.Registry.PushPause(t, env, "eks/pause", "3.10")
			if mirrored != original {
				t.Fatalf("the mirror holds %s, the registry %s: not the same image", mirrored, original)
			}
			n.WriteMirrorsFirst(mirror.Host)
			registryBefore = n.Registry.ManifestsServed(t, "eks/pause")
		}}
		n, _ := keeperNode(t, c, opts, "")
		imagePinned(t, n, 20*time.Second, "sandbox image pulled by the plugin through the mirror")
		first := mirror.ManifestsServed(t, "eks/pause")
		if first == 0 {
			t.Fatalf("the mirror served no manifest; its log:\n%s", mirror.Log(t))
		}
		if got := n.Registry.ManifestsServed(t, "eks/pause"); got != registryBefore {
			t.Fatalf("the registry behind the mirror served %d manifest requests, want none (the mirror refused the plugin?); mirror log:\n%s", got-registryBefore, mirror.Log(t))
		}

		if out, err := n.Ctr("images", "rm", n.SandboxImage); err != nil {
			t.Fatalf("ctr images rm: %v: %s", err, out)
		}
		imagePinned(t, n, 5*time.Second, "sandbox image repaired through the mirror")
		if got := mirror.ManifestsServed(t, "eks/pause"); got <= first {
			t.Errorf("the mirror served no manifest for the repair (%d before, %d after)", first, got)
		}
		if got := n.Registry.ManifestsServed(t, "eks/pause"); got != registryBefore {
			t.Errorf("the registry behind the mirror served %d manifest requests during the repair, want none", got-registryBefore)
		}
		id := n.CRI.MustRunP(harness.Pod{Name: "web-1"})
		n.CRI.Remove(id)

		// The control: CRI's own pull with the registry's credentials (what kubelet passes) goes
		// through the same mirror. The image exists only there, so nothing else could serve it.
		only, _ := mirror.PushPause(t, env, "eks/control", "1")
		n.CRI.MustPull(n.Registry.Host+"/eks/control:1", n.Registry.User+":"+n.Registry.Password)
		if mirror.ManifestsServed(t, "eks/control") == 0 {
			t.Errorf("CRI's pull of %s was not served by the mirror", only)
		}
	})
}

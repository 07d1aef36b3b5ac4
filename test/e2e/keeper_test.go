package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// keeperNode starts a node whose containerd has no sandbox image yet, with the plugin
// pre-registered, treating the auth-protected test registry as ECR.
func keeperNode(t *testing.T, c harness.Containerd, opts harness.NodeOptions, extra string) (*harness.Node, *harness.FakeECR) {
	env := harness.Load(t)
	var fake *harness.FakeECR
	opts.NoSandboxImage = true
	opts.PluginConfig = func(n *harness.Node) string {
		fake = n.StartFakeECR(12 * time.Hour)
		return n.PluginBase() + fake.PluginECRConfig(n) + "mode: enforce\npreset: none\nsandboxImage: auto\n" + extra
	}
	n := harness.StartNode(t, env, c, opts)
	t.Cleanup(func() { assertNoSecrets(t, n) })
	return n, fake
}

// imagePinned polls CRI until the sandbox image is present and pinned.
func imagePinned(t *testing.T, n *harness.Node, within time.Duration, what string) {
	t.Helper()
	n.WaitPinned(n.SandboxImage, within, what)
}

func TestKeeperPullsSandboxImageWithECRCredentials(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		n, fake := keeperNode(t, c, harness.NodeOptions{}, "")
		imagePinned(t, n, 20*time.Second, "sandbox image pulled by the plugin")
		if fake.Calls() < 1 {
			t.Errorf("the fake ECR API was called %d times, want at least 1", fake.Calls())
		}
		if r := fake.Regions(); r["us-west-2"] == 0 {
			t.Errorf("token requested in regions %v, want us-west-2 (the registry's declared region)", r)
		}
		id := n.CRI.MustRunP(harness.Pod{Name: "web-1"})
		n.CRI.Remove(id)
		if !strings.Contains(n.Registry.Log(t), "GET /v2/eks/pause/manifests/") {
			t.Errorf("the registry log shows no manifest pull")
		}
	})
}

func TestKeeperRepairsDeletionAndLostPin(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		n, _ := keeperNode(t, c, harness.NodeOptions{}, "")
		imagePinned(t, n, 20*time.Second, "sandbox image pulled by the plugin")

		if out, err := n.Ctr("images", "rm", n.SandboxImage); err != nil {
			t.Fatalf("ctr images rm: %v: %s", err, out)
		}
		start := time.Now()
		imagePinned(t, n, 2*time.Second, "sandbox image back after deletion")
		t.Logf("repaired %v after ctr images rm", time.Since(start).Round(time.Millisecond))
		id := n.CRI.MustRunP(harness.Pod{Name: "web-1"})
		n.CRI.Remove(id)
	})
}

// A pinned label that goes away comes back. The test uses a pinImages image: CRI itself re-pins
// the sandbox image on containerd 1.7.35 and 2.x, which would hide a keeper that does nothing.
func TestKeeperRestoresLostPin(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		var extra string
		n := harness.StartNode(t, env, c, harness.NodeOptions{PluginConfig: func(n *harness.Node) string {
			fake := n.StartFakeECR(12 * time.Hour)
			extra, _ = n.Registry.PushPause(t, env, "amazon-k8s-cni", "v1.19.0")
			return n.PluginBase() + fake.PluginECRConfig(n) + fmt.Sprintf("mode: enforce\npreset: none\nsandboxImage: auto\npinImages: [{image: %s}]\n", extra)
		}})
		t.Cleanup(func() { assertNoSecrets(t, n) })
		n.WaitPinned(extra, 20*time.Second, "pinned image pulled by the plugin")
		// The pull writes the labels before it ends (unpack, local copy): a label taken away
		// before then would be put back by the pull itself, not by the repair under test.
		pulled := fmt.Sprintf("msg=\"image pulled, present and pinned\" image=\"%s\"", extra)
		harness.Eventually(t, 20*time.Second, "the keeper's pull of "+extra+" done", func() error {
			if !strings.Contains(readFile(t, n.PluginLog), pulled) {
				return fmt.Errorf("no %s in the plugin log", pulled)
			}
			return nil
		})
		if out, err := n.Ctr("images", "label", extra, "io.cri-containerd.pinned="); err != nil {
			t.Fatalf("ctr images label: %v: %s", err, out)
		}
		n.WaitPinned(extra, 2*time.Second, "pinned label back")
		// The label is set just before the line is logged.
		harness.Eventually(t, 2*time.Second, "the keeper logs re-pinning "+extra, func() error {
			if !strings.Contains(readFile(t, n.PluginLog), "pinned the image") {
				return fmt.Errorf("the plugin log does not show the keeper re-pinning %s", extra)
			}
			return nil
		})
	})
}

func TestKeeperRestoresFromLocalCopy(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		n, _ := keeperNode(t, c, harness.NodeOptions{}, "")
		imagePinned(t, n, 20*time.Second, "sandbox image pulled by the plugin")
		state := filepath.Join(n.Dir, "state", "images")
		harness.Eventually(t, 10*time.Second, "local copy saved", func() error {
			m, _ := filepath.Glob(filepath.Join(state, "*.tar"))
			if len(m) == 0 {
				return fmt.Errorf("no archive in %s", state)
			}
			return nil
		})

		n.Registry.Stop() // ECR or the network is down
		if out, err := n.Ctr("images", "rm", n.SandboxImage); err != nil {
			t.Fatalf("ctr images rm: %v: %s", err, out)
		}
		imagePinned(t, n, 5*time.Second, "sandbox image restored from the local copy")
		id := n.CRI.MustRunP(harness.Pod{Name: "web-1"})
		n.CRI.Remove(id)
		harness.Eventually(t, 2*time.Second, "log says local copy", func() error {
			if !strings.Contains(readFile(t, n.PluginLog), "restored from the local copy") {
				return fmt.Errorf("plugin log does not mention the local copy")
			}
			return nil
		})

		// A corrupted copy is detected by its digest and never imported.
		m, _ := filepath.Glob(filepath.Join(state, "*.tar"))
		if err := os.WriteFile(m[0], []byte("not an image"), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := n.Ctr("images", "rm", n.SandboxImage); err != nil {
			t.Fatalf("ctr images rm: %v: %s", err, out)
		}
		harness.Eventually(t, 5*time.Second, "corruption reported", func() error {
			if !strings.Contains(readFile(t, n.PluginLog), "is corrupted") {
				return fmt.Errorf("plugin log does not report the corrupted copy")
			}
			return nil
		})
		if st, err := n.CRI.Image(n.SandboxImage); err != nil || st.Present {
			t.Fatalf("image present %v (err %v) after only a corrupted copy was available", st.Present, err)
		}
	})
}

func TestKeeperFallbackRescuesWrongReference(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		var fallback string
		opts := harness.NodeOptions{ConfiguredSandbox: "wrong-account/eks/pause:3.10"}
		env := harness.Load(t)
		var fake *harness.FakeECR
		opts.NoSandboxImage = true
		opts.PluginConfig = func(n *harness.Node) string {
			fake = n.StartFakeECR(12 * time.Hour)
			fallback = n.PushedImage
			return n.PluginBase() + fake.PluginECRConfig(n) + fmt.Sprintf("mode: enforce\npreset: none\nsandboxImage: auto\nsandboxImageFallbacks: [%s]\n", fallback)
		}
		n := harness.StartNode(t, env, c, opts)
		t.Cleanup(func() { assertNoSecrets(t, n) })
		imagePinned(t, n, 20*time.Second, "fallback tagged under the configured name")
		out, err := n.Ctr("images", "ls", "name=="+n.SandboxImage)
		if err != nil || !strings.Contains(out, "io.cri-containerd.source="+fallback) {
			t.Fatalf("configured name lacks the source label: %v\n%s", err, out)
		}
		id := n.CRI.MustRunP(harness.Pod{Name: "web-1"})
		n.CRI.Remove(id)
		if log := readFile(t, n.PluginLog); !strings.Contains(log, "wrong-account/eks/pause:3.10") || !strings.Contains(log, "pull failed") {
			t.Errorf("plugin log does not explain the failed source:\n%s", log)
		}
	})
}

// assertNoSecrets fails when the registry password (which the fake ECR hands out as the token)
// appears in any plugin log, plain or base64-encoded.
func assertNoSecrets(t *testing.T, n *harness.Node, moreLogs ...string) {
	t.Helper()
	log := readFile(t, n.PluginLog) + strings.Join(moreLogs, "")
	pw := n.Registry.Password
	for _, secret := range []string{pw, base64Std("AWS:" + pw)} {
		if strings.Contains(log, secret) {
			t.Errorf("plugin log contains a secret")
		}
	}
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// `check` asks the running containerd its version and reads containerd's configuration with
// that line's rules (version 4 on 2.3 and 2.4): the containerd row names both, and the images row
// sees the image the keeper pulled and pinned.
func TestCheckReadsConfigForTheRunningContainerd(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		n, _ := keeperNode(t, c, harness.NodeOptions{}, "")
		imagePinned(t, n, 20*time.Second, "sandbox image pulled by the plugin")
		cfg := filepath.Join(n.PluginConfDir, "10-sandbox-guard.conf")
		out, err := n.NS.Command(n.Env.Plugin, "check", "--config", cfg, "-o", "json").Output()
		if err != nil {
			t.Fatalf("check: %v\n%s", err, out)
		}
		rows := map[string]string{}
		for name, r := range checkRows(t, out) {
			rows[name] = fmt.Sprintf("ok=%v %s", r.OK, r.Detail)
		}
		wantRuntime := fmt.Sprintf("ok=true containerd %s; configuration read as %s (containerd %s)", c.Version, c.Line, c.Version)
		if !strings.HasPrefix(rows["containerd"], wantRuntime) {
			t.Errorf("containerd row %q, want it to start with %q", rows["containerd"], wantRuntime)
		}
		if want := "ok=true " + n.SandboxImage + " present and pinned"; !strings.HasPrefix(rows["images"], want) {
			t.Errorf("images row %q, want %q", rows["images"], want)
		}
	})
}

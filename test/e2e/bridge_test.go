package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// bridgeConfig is an external-plugin configuration that keeps the sandbox image with ECR
// credentials from the fake ECR, with the credential bridge on or off.
func bridgeConfig(n *harness.Node, fake *harness.FakeECR, on bool) string {
	return n.PluginBase() + fake.PluginECRConfig(n) + fmt.Sprintf("  credentialBridge: %v\nmode: enforce\npreset: none\nsandboxImage: auto\nmetrics: {address: \"\"}\n", on)
}

// deleteSandboxImage removes every reference of the sandbox image, as image GC would.
func deleteSandboxImage(t *testing.T, n *harness.Node) {
	t.Helper()
	out, err := n.Ctr("images", "ls", "-q")
	if err != nil {
		t.Fatalf("ctr images ls: %v: %s", err, out)
	}
	for _, name := range strings.Fields(out) {
		if strings.Contains(name, "pause") || strings.HasPrefix(name, "sha256:") {
			if out, err := n.Ctr("images", "rm", name); err != nil {
				t.Fatalf("ctr images rm %s: %v: %s", name, err, out)
			}
		}
	}
	if st, err := n.CRI.Image(n.SandboxImage); err != nil || st.Present {
		t.Fatalf("sandbox image still present (%v) after deleting every reference", err)
	}
}

func waitBridgeEntry(t *testing.T, n *harness.Node) string {
	t.Helper()
	var content string
	harness.Eventually(t, 20*time.Second, "credential bridge entry", func() error {
		b, err := os.ReadFile(n.HostsToml())
		if err != nil {
			return err
		}
		content = string(b)
		if !strings.Contains(content, "Authorization = [") {
			return fmt.Errorf("no Authorization entry yet:\n%s", content)
		}
		return nil
	})
	st, err := os.Stat(n.HostsToml())
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("hosts.toml mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	return content
}

func TestBridgeLetsContainerdPullTheSandboxImageItself(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{})
		fake := n.StartFakeECR(12 * time.Hour)
		p := n.StartExternalPlugin(bridgeConfig(n, fake, true))
		content := waitBridgeEntry(t, n)
		if !strings.Contains(content, `[host."http://`+n.Registry.Host+`"]`) || strings.Index(content, "server =") > strings.Index(content, "[host.") {
			t.Fatalf("unexpected layout:\n%s", content)
		}

		p.Stop() // the plugin is not running: only containerd and the file are left
		deleteSandboxImage(t, n)
		before := strings.Count(n.Registry.Log(t), "/v2/eks/pause/manifests/")
		id := n.CRI.MustRunP(harness.Pod{Name: "web-1"})
		n.CRI.Remove(id)
		if after := strings.Count(n.Registry.Log(t), "/v2/eks/pause/manifests/"); after <= before {
			t.Fatalf("the registry saw no manifest request from containerd's own pull")
		}
		assertNoSecrets(t, n, p.Log())
	})
}

func TestBridgeKeepsMirrorsAndTheirPriority(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{})
		// A mirror that has nothing (like a Spegel peer without the image) and records headers.
		var mu sync.Mutex
		var requests, withAuth int
		l := n.NS.Listen(t)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			requests++
			if r.Header.Get("Authorization") != "" {
				withAuth++
			}
			mu.Unlock()
			http.NotFound(w, r)
		})}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })
		original := fmt.Sprintf("# mirror first, managed by the mirror's own installer\nserver = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", n.Registry.Host, l.Addr())
		if err := os.WriteFile(n.HostsToml(), []byte(original), 0o644); err != nil {
			t.Fatal(err)
		}
		fake := n.StartFakeECR(12 * time.Hour)
		p := n.StartExternalPlugin(bridgeConfig(n, fake, true))
		content := waitBridgeEntry(t, n)
		if !strings.HasPrefix(content, original) {
			t.Fatalf("the existing file was not kept byte for byte at the top:\n%s", content)
		}
		p.Stop()
		deleteSandboxImage(t, n)
		id := n.CRI.MustRunP(harness.Pod{Name: "web-1"})
		n.CRI.Remove(id)
		mu.Lock()
		defer mu.Unlock()
		if requests == 0 {
			t.Errorf("containerd never asked the mirror first")
		}
		if withAuth != 0 {
			t.Errorf("the mirror received the Authorization header %d times", withAuth)
		}
	})
}

func TestBridgeRefreshesBeforeExpiry(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{})
		fake := n.StartFakeECR(12 * time.Second) // refreshed at half its lifetime, ~6 s
		n.StartExternalPlugin(bridgeConfig(n, fake, true))
		waitBridgeEntry(t, n)
		first := fake.Calls()
		fake.SetCredentials(n.Registry.User, n.Registry.Password+"-rotated") // a new token looks different
		harness.Eventually(t, 11*time.Second, "entry rewritten with the next token", func() error {
			b, _ := os.ReadFile(n.HostsToml())
			if fake.Calls() <= first || !strings.Contains(string(b), strings.TrimSuffix(basicAuth(n.Registry.User, n.Registry.Password+"-rotated"), "=")) {
				return fmt.Errorf("ECR calls %d (first %d); entry not rewritten yet", fake.Calls(), first)
			}
			return nil
		})
	})
}

func TestBridgeOffTouchesNothing(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{})
		before := snapshotDir(t, n.CertsDir)
		fake := n.StartFakeECR(12 * time.Hour)
		p := n.StartExternalPlugin(bridgeConfig(n, fake, false))
		// The bridge's decision is logged once the keeper has started; nothing may change before
		// or after it.
		harness.Eventually(t, 20*time.Second, "credential bridge off handled", func() error {
			if !strings.Contains(p.Log(), "credential bridge off: no entry of it left") {
				return fmt.Errorf("not yet; log:\n%s", p.Log())
			}
			return nil
		})
		p.Stop()
		if after := snapshotDir(t, n.CertsDir); after != before {
			t.Fatalf("hosts directory changed with the bridge off:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// The check command reads containerd's configuration file only (no containerd runs), so this
// test does not start a node per line; it covers the file formats of the lines the rule is about:
// version 3 (2.0-2.2) and version 4 (2.3 and 2.4), whose CRI pulls go through the transfer
// service. containerd 1.7 has no transfer service (its case is internal/containerdconfig's).
func TestBridgeNotEffectiveWithTwoConfigDirs(t *testing.T) {
	env := harness.Load(t)
	for _, version := range []int{3, 4} {
		t.Run(fmt.Sprintf("config-v%d", version), func(t *testing.T) {
			t.Parallel() // each waits ~5 s for the absent containerd
			dir := t.TempDir()
			ctrCfg := filepath.Join(dir, "config.toml")
			if err := os.WriteFile(ctrCfg, []byte(fmt.Sprintf(`version = %d
[plugins.'io.containerd.cri.v1.images'.registry]
  config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"
`, version)), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(dir, "sg.yaml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`preset: none
sandboxImage: 602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10
containerd: {configFile: %s, address: %s}
ecr: {credentialBridge: true}
`, ctrCfg, filepath.Join(dir, "no-containerd.sock"))), 0o644); err != nil {
				t.Fatal(err)
			}
			out, _ := exec.Command(env.Plugin, "check", "--config", cfg, "-o", "json").Output()
			c, ok := checkRows(t, out)["credential-bridge"]
			if !ok {
				t.Fatalf("no credential-bridge check in %s", out)
			}
			if c.OK || !strings.Contains(c.Detail, "NOT effective") || !strings.Contains(c.Detail, "use_local_image_pull = true") {
				t.Fatalf("credential-bridge check = %+v, want not effective with the fix", c)
			}
		})
	}
}

func snapshotDir(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d\n", p, info.Mode(), info.Size())
		if !info.IsDir() {
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b.Write(c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func basicAuth(user, pw string) string {
	return "Basic " + base64Std(user+":"+pw)
}

// A stale bridged token must not make anything worse: ECR answers an expired token with 403, so
// a registry front answers 403 to exactly the bridged header. With the plugin stopped, a CRI pull
// with credentials (kubelet's) still succeeds, and a runp fails just as without any bridge.
func TestBridgeFailsSafeWhenTheTokenGoesStale(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		const stale = "stale-token"
		staleHeader := basicAuth("AWS", stale)
		var front *harness.Front
		n := harness.StartNode(t, env, c, harness.NodeOptions{NoSandboxImage: true, SandboxImageFor: func(n *harness.Node) string {
			front = n.StartFront(harness.FrontOptions{Forbid: staleHeader})
			return front.Host + "/eks/pause:3.10"
		}})
		fake := n.StartFakeECR(12 * time.Hour)
		fake.SetCredentials("AWS", stale) // the token the bridge writes has expired at the registry
		cfg := n.PluginBase() + fmt.Sprintf("ecr:\n  registries: {%q: us-west-2}\n  endpoint: %s\n  sharedCredentialsFiles: [%s]\n  credentialBridge: true\nmode: enforce\npreset: none\nsandboxImage: auto\nmetrics: {address: \"\"}\n",
			front.Host, fake.URL, fake.CredentialsFile)
		p := n.StartExternalPlugin(cfg)
		file := filepath.Join(n.CertsDir, front.Host, "hosts.toml")
		harness.Eventually(t, 20*time.Second, "bridge entry for the front", func() error {
			b, err := os.ReadFile(file)
			if err != nil || !strings.Contains(string(b), staleHeader) {
				return fmt.Errorf("no bridged header in %s yet (%v)", file, err)
			}
			return nil
		})
		p.Stop()

		// kubelet's pull, with credentials: the stale header is refused (403), containerd moves on
		// to the header-less server entry and authenticates as usual.
		n.CRI.MustPull(n.SandboxImage, n.Registry.User+":"+n.Registry.Password)
		if front.Denied() == 0 {
			t.Errorf("the stale bridged header was never tried; the test proves nothing")
		}

		// containerd's own pull of a missing sandbox image fails at the same step as without a
		// bridge, after trying the header-less server too (containerd reports the first host's
		// 403 rather than the server's 401).
		deleteSandboxImage(t, n)
		anonBefore := front.Anonymous()
		_, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
		if err == nil {
			t.Fatal("runp succeeded with only a stale token and no credentials")
		}
		// containerd 1.7 and 2.2 pull the sandbox image in the pod sandbox controller ("failed to
		// get sandbox image"); from 2.3 the CRI service pulls it itself before starting the
		// sandbox (v2.3.7 internal/cri/server/sandbox_run.go ensurePauseImageExists).
		atPull := "failed to get sandbox image"
		if c.Line >= containerdconfig.Line23 {
			atPull = fmt.Sprintf("failed to pull image %q", n.SandboxImage)
		}
		if !strings.Contains(err.Error(), atPull) {
			t.Fatalf("runp failed elsewhere than at the sandbox image pull (want %q): %v", atPull, err)
		}
		if front.Anonymous() == anonBefore {
			t.Fatalf("containerd did not fall back to the header-less server entry")
		}
	})
}

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sandbox-guard/sandbox-guard/deploy"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/install"
	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

const imageRef = "localhost/sandbox-guard:e2e"

// buildImage builds the container image the way `make image` does, from the binary under test,
// into a directory removed when t ends.
func buildImage(t *testing.T, env *harness.Env) string {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "sandbox-guard-image.tar")
	cmd := exec.Command("go", "run", "./deploy/image", "--binary", env.Plugin, "--out", archive, "--ref", imageRef)
	cmd.Dir = env.RepoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./deploy/image: %v\n%s", err, out)
	}
	return archive
}

// daemonSetContainer turns the external overlay's DaemonSet, as kustomize builds it, into the
// container kubelet would run on this node: every host path at its place under the node's root
// (overrides name exceptions), the ConfigMap from configDir, emptyDirs, and the same command, user,
// capabilities and flags. So the test runs exactly the privileges the manifest grants.
func daemonSetContainer(t *testing.T, n *harness.RootNode, ds *corev1.PodSpec, configDir string, overrides map[string]string) harness.ContainerSpec {
	t.Helper()
	c := ds.Containers[0]
	// Copies: the lines' subtests share ds and run in parallel, and tests append to Args.
	spec := harness.ContainerSpec{Name: "sandbox-guard", Image: imageRef, Command: slices.Clone(c.Command), Args: slices.Clone(c.Args), HostNetwork: ds.HostNetwork}
	sc := c.SecurityContext
	if sc.Privileged != nil {
		spec.Privileged = *sc.Privileged
	}
	if sc.ReadOnlyRootFilesystem != nil {
		spec.ReadOnlyRootfs = *sc.ReadOnlyRootFilesystem
	}
	if sc.AllowPrivilegeEscalation != nil {
		spec.NoNewPrivileges = !*sc.AllowPrivilegeEscalation
	}
	spec.RunAsUser = sc.RunAsUser
	for _, cp := range sc.Capabilities.Add {
		spec.AddCaps = append(spec.AddCaps, string(cp))
	}
	for _, cp := range sc.Capabilities.Drop {
		spec.DropCaps = append(spec.DropCaps, string(cp))
	}
	// sc.SeccompProfile (RuntimeDefault) is left out: this machine's runc is built without
	// seccomp support and would refuse any profile.
	volumes := map[string]corev1.Volume{}
	for _, v := range ds.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		v := volumes[m.Name]
		var host string
		switch {
		case v.HostPath != nil:
			host = overrides[v.HostPath.Path]
			if host == "" {
				host = filepath.Join(n.Root, v.HostPath.Path)
			}
			switch *v.HostPath.Type {
			case corev1.HostPathFileOrCreate:
				if _, err := os.Stat(host); os.IsNotExist(err) {
					must(t, os.MkdirAll(filepath.Dir(host), 0o755))
					must(t, os.WriteFile(host, nil, 0o644))
				}
			case corev1.HostPathDirectoryOrCreate:
				must(t, os.MkdirAll(host, 0o755))
			default:
				t.Fatalf("volume %s: host path type %s not handled by this test", v.Name, *v.HostPath.Type)
			}
		case v.ConfigMap != nil:
			host = configDir
		case v.EmptyDir != nil:
			dir, err := os.MkdirTemp(n.Dir, "emptydir-"+v.Name+"-")
			must(t, err)
			host = dir
		default:
			t.Fatalf("volume %s: only host paths, the ConfigMap and emptyDirs are expected", v.Name)
		}
		spec.Mounts = append(spec.Mounts, harness.Mount{HostPath: host, ContainerPath: m.MountPath, ReadOnly: m.ReadOnly})
	}
	return spec
}

// The external overlay's pod, from the image `make image` builds, run through CRI with the
// DaemonSet's mounts and privileges (not privileged: NET_ADMIN and NET_RAW): it connects to
// containerd's NRI socket through the mounted directory, reads iptables through both backends
// in the node's network namespace, gates pods, and does all that again after containerd
// restarts and recreates its socket.
func TestDaemonSetExternalPluginGates(t *testing.T) {
	objs, err := deploy.Build(filepath.Join(harness.Load(t).RepoRoot, "deploy/overlays/external"))
	if err != nil {
		t.Fatal(err)
	}
	pod := objs.DaemonSet.Spec.Template.Spec
	archive := buildImage(t, harness.Load(t))
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNodeWithConfig(t, env, c, harness.NodeOptions{}, func(n *harness.RootNode) {
			must(t, os.WriteFile(n.ConfigFile, []byte(n.ImportingMainConfig()), 0o644))
			must(t, os.WriteFile(filepath.Join(n.ConfigD(), "00-test.toml"), []byte(n.TestDropIn()), 0o644))
			// NRI on, the way install does it (a drop-in of the main configuration's version), but
			// no pre-registered plugin: the pod is the plugin.
			dropIn, err := install.RenderDropInVersion(c.ConfigVersion(), n.Root)
			must(t, err)
			must(t, os.WriteFile(filepath.Join(n.ConfigD(), install.DropInName), dropIn, 0o644))
		})
		if out, err := n.Ctr("images", "import", archive); err != nil {
			t.Fatalf("ctr images import: %v\n%s", err, out)
		}

		// The ConfigMap: checks that read iptables (nft and legacy) and the mounted CNI dirs.
		configDir := filepath.Join(n.Dir, "configmap")
		must(t, os.MkdirAll(configDir, 0o755))
		must(t, os.WriteFile(filepath.Join(configDir, "config.yaml"), []byte(`mode: enforce
preset: none
refresh: {interval: 200ms}
checks:
  - name: nft-rules
    iptables: {table: nat, chain: SG-E2E-NFT, backend: nft}
    hint: the test has not created its nft chain yet
  - name: legacy-rules
    iptables: {table: filter, chain: SG-E2E-LEGACY, backend: legacy}
    hint: the test has not created its legacy chain yet
  - name: cni-config
    cni: {confDir: /etc/cni/net.d, binDirs: [/opt/cni/bin]}
`), 0o644))
		spec := daemonSetContainer(t, n, &pod, configDir, map[string]string{"/opt/cni/bin": env.CNIBin})
		// Test plumbing, not part of the DaemonSet: the node's containerd configuration imports
		// its drop-ins by their paths under the node's root; on a real node those are
		// /etc/containerd/config.d/*.toml, inside the /etc/containerd mount. Make them resolve
		// in the container too, so the image keeper reads the configuration a node would give it.
		spec.Mounts = append(spec.Mounts, harness.Mount{HostPath: n.ConfigD(), ContainerPath: n.ConfigD(), ReadOnly: true})
		ctr := n.RunContainer(spec)

		connected := func(times int) {
			t.Helper()
			harness.Eventually(t, 20*time.Second, "the DaemonSet's plugin connects to NRI", func() error {
				if got := strings.Count(ctr.Log(), "connected to the container runtime"); got < times {
					state, code, _ := ctr.State()
					return fmt.Errorf("connected %d times, want %d (container %s, exit %d); log:\n%s", got, times, state, code, ctr.Log())
				}
				return nil
			})
		}
		connected(1)
		// The DaemonSet's probes, at the address and paths the manifest names.
		probes := map[string]*corev1.Probe{"liveness": pod.Containers[0].LivenessProbe, "readiness": pod.Containers[0].ReadinessProbe}
		for what, p := range probes {
			if p.HTTPGet.Host != "127.0.0.1" || p.HTTPGet.Port.IntValue() != 9809 {
				t.Fatalf("%s probe %+v: this test asks 127.0.0.1:9809", what, p.HTTPGet)
			}
			wantHTTP(t, n.NS, p.HTTPGet.Path, 200)
		}
		_, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
		wantRejection(t, err, "default/web-1", "nft-rules: iptables nat/SG-E2E-NFT missing", "legacy-rules: iptables filter/SG-E2E-LEGACY missing")
		if strings.Contains(err.Error(), "cni-config") {
			t.Errorf("the CNI check fails through the DaemonSet's CNI mounts: %v", err)
		}
		n.NS.MustRun(t, "iptables-nft", "-t", "nat", "-N", "SG-E2E-NFT")
		n.NS.MustRun(t, "iptables-legacy", "-t", "filter", "-N", "SG-E2E-LEGACY")
		admitted(t, n.Node, "web-1", 5*time.Second)

		// containerd restarts and recreates its NRI socket; the plugin, still running in its
		// container, reconnects through the directory mount and gates again.
		n.Restart()
		connected(2)
		wantHTTP(t, n.NS, pod.Containers[0].ReadinessProbe.HTTPGet.Path, 200)
		n.NS.MustRun(t, "iptables-nft", "-t", "nat", "-X", "SG-E2E-NFT")
		rejectedFor(t, n.Node, "nft-rules", 5*time.Second)
		n.NS.MustRun(t, "iptables-nft", "-t", "nat", "-N", "SG-E2E-NFT")
		admitted(t, n.Node, "web-2", 5*time.Second)
		if state, code, err := ctr.State(); err != nil || state != "CONTAINER_RUNNING" {
			t.Errorf("container %s (exit %d, %v); log:\n%s", state, code, err, ctr.Log())
		}

		// The capabilities are needed, not just sufficient: the same container without
		// NET_ADMIN and NET_RAW cannot read either backend.
		check := spec
		check.Name = "sandbox-guard-nocaps"
		check.Command = []string{"/sandbox-guard", "check", "--config", "/etc/sandbox-guard/config.yaml"}
		check.Args = nil
		check.AddCaps = nil
		nocaps := n.RunContainer(check)
		if code := nocaps.WaitExited(20 * time.Second); code != 1 {
			t.Errorf("check without capabilities: exit %d, want 1 (not ready); log:\n%s", code, nocaps.Log())
		}
		for _, check := range []string{"nft-rules", "legacy-rules"} {
			if !slices.ContainsFunc(strings.Split(nocaps.Log(), "\n"), func(line string) bool {
				return strings.Contains(line, check) && strings.Contains(line, "operation not permitted")
			}) {
				t.Errorf("check without capabilities does not report %s as not permitted:\n%s", check, nocaps.Log())
			}
		}
	})
}

// The installer overlay's pod, run through CRI with its mounts and privileges (no capability at
// all), pre-registers the plugin on the node; containerd runs it from its next start on, and
// the pod's readiness probe then finds it.
func TestDaemonSetInstallerPreRegisters(t *testing.T) {
	objs, err := deploy.Build(filepath.Join(harness.Load(t).RepoRoot, "deploy/overlays/installer"))
	if err != nil {
		t.Fatal(err)
	}
	pod := objs.DaemonSet.Spec.Template.Spec
	archive := buildImage(t, harness.Load(t))
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNodeWithConfig(t, env, c, harness.NodeOptions{}, func(n *harness.RootNode) {
			must(t, os.WriteFile(n.ConfigFile, []byte(n.ImportingMainConfig()), 0o644))
			must(t, os.WriteFile(filepath.Join(n.ConfigD(), "00-test.toml"), []byte(n.TestDropIn()), 0o644))
		})
		if out, err := n.Ctr("images", "import", archive); err != nil {
			t.Fatalf("ctr images import: %v\n%s", err, out)
		}
		marker := filepath.Join(n.Dir, "ready")
		configDir := filepath.Join(n.Dir, "configmap")
		must(t, os.MkdirAll(configDir, 0o755))
		must(t, os.WriteFile(filepath.Join(configDir, "config.yaml"), []byte(fmt.Sprintf(`mode: enforce
%spreset: none
refresh: {interval: 200ms}
checks:
  - name: marker
    file: {path: %s}
    hint: the test has not written its marker yet
`, n.PluginBase(), marker)), 0o644))

		spec := daemonSetContainer(t, n, &pod, configDir, nil)
		// Test plumbing: this node's containerd finds its files under n.Root, not at /, so the
		// drop-in must name them there (on a node the default paths root "/" is right).
		spec.Args = append(spec.Args, "--paths-root="+n.Root)
		ctr := n.RunContainer(spec)
		harness.Eventually(t, 20*time.Second, "the installer installs", func() error {
			if got := strings.Count(ctr.Log(), "created "); got != 3 {
				state, code, _ := ctr.State()
				return fmt.Errorf("%d files created, want 3 (container %s, exit %d); log:\n%s", got, state, code, ctr.Log())
			}
			return nil
		})
		if strings.Contains(ctr.Log(), "WARNING") {
			t.Errorf("installer warns:\n%s", ctr.Log())
		}
		if _, err := n.CRI.RunP(harness.Pod{Name: "web-1"}); err != nil {
			t.Fatalf("a pod was gated before containerd restarted: %v", err)
		}

		// containerd starts the installed plugin at its next start.
		n.Restart()
		_, err := n.CRI.RunP(harness.Pod{Name: "web-2"})
		wantRejection(t, err, "default/web-2", "marker:", "the test has not written its marker yet")
		must(t, os.WriteFile(marker, nil, 0o644))
		admitted(t, n.Node, "web-2", 5*time.Second)
		wantHTTP(t, n.NS, pod.Containers[0].ReadinessProbe.HTTPGet.Path, 200)
		if state, code, err := ctr.State(); err != nil || state != "CONTAINER_RUNNING" {
			t.Errorf("installer %s (exit %d, %v); it keeps watching; log:\n%s", state, code, err, ctr.Log())
		}
	})
}

// A standing watch: where a pre-registered sandbox-guard runs, the external overlay's pod stands
// by (each pod is judged once, by the plugin containerd runs), through the stand-by lock it
// sees in its state mount; when that plugin is killed, the pod takes over at once, and its
// health server takes over the shared loopback address the probes ask.
func TestDaemonSetExternalStandsByForPreRegistered(t *testing.T) {
	env := harness.Load(t)
	if help, _ := exec.Command(env.Plugin, "run", "-h").CombinedOutput(); !strings.Contains(string(help), "-standby-lock") {
		t.Fatal("sandbox-guard run has no -standby-lock, which the external overlay passes")
	}
	objs, err := deploy.Build(filepath.Join(env.RepoRoot, "deploy/overlays/external"))
	if err != nil {
		t.Fatal(err)
	}
	pod := objs.DaemonSet.Spec.Template.Spec
	lock := strings.TrimPrefix(pod.Containers[0].Args[0], "--standby-lock=")
	archive := buildImage(t, env)
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNodeWithConfig(t, env, c, harness.NodeOptions{}, func(n *harness.RootNode) {
			must(t, os.WriteFile(n.ConfigFile, []byte(n.ImportingMainConfig()), 0o644))
			must(t, os.WriteFile(filepath.Join(n.ConfigD(), "00-test.toml"), []byte(n.TestDropIn()), 0o644))
			// The shipped configuration's stateDir, at its place under the node's root, and the
			// default metrics address, which the DaemonSet's pod shares on the node's loopback.
			cfg := filepath.Join(n.Dir, "preregistered.yaml")
			must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`mode: enforce
log: {file: %s, level: debug}
containerd: {address: %s, configFile: %s}
stateDir: %s
preset: none
refresh: {interval: 200ms}
checks:
  - name: preregistered-marker
    file: {path: %s}
`, n.PluginLog, n.Socket, n.ConfigFile, filepath.Join(n.Root, config.Default().StateDir), filepath.Join(n.Dir, "ready"))), 0o644))
			runInstall(t, n, 0, "--config", cfg)
		})
		if out, err := n.Ctr("images", "import", archive); err != nil {
			t.Fatalf("ctr images import: %v\n%s", err, out)
		}
		configDir := filepath.Join(n.Dir, "configmap")
		must(t, os.MkdirAll(configDir, 0o755))
		must(t, os.WriteFile(filepath.Join(configDir, "config.yaml"), []byte(`mode: enforce
preset: none
sandboxImage: ""
checks:
  - name: external-marker
    file: {path: /nonexistent}
`), 0o644))
		pid := n.PreRegisteredPID()
		if pid == 0 {
			t.Fatal("containerd runs no pre-registered plugin")
		}
		ctr := n.RunContainer(daemonSetContainer(t, n, &pod, configDir, nil))
		containerLog := func(line string) {
			t.Helper()
			harness.Eventually(t, 20*time.Second, "the DaemonSet's plugin logs "+line, func() error {
				if !strings.Contains(ctr.Log(), line) {
					return fmt.Errorf("log:\n%s", ctr.Log())
				}
				return nil
			})
		}
		containerLog(fmt.Sprintf("standing by: pre-registered sandbox-guard holds %s (pid %d)", lock, pid))
		_, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
		wantRejection(t, err, "default/web-1", "preregistered-marker")
		if strings.Contains(err.Error(), "external-marker") || strings.Contains(ctr.Log(), "connected to the container runtime") {
			t.Errorf("the external plugin gates too: %v\nits log:\n%s", err, ctr.Log())
		}
		wantHTTP(t, n.NS, pod.Containers[0].ReadinessProbe.HTTPGet.Path, 200) // the pre-registered plugin's

		must(t, syscall.Kill(pid, syscall.SIGKILL))
		containerLog("taking over: no pre-registered sandbox-guard holds " + lock)
		rejectedFor(t, n.Node, "external-marker", 5*time.Second)
		// The probes' address is free now: the pod serves it, so its probes keep passing.
		containerLog("metrics and health server started: its address is free now")
		wantHTTP(t, n.NS, pod.Containers[0].LivenessProbe.HTTPGet.Path, 200)
		wantHTTP(t, n.NS, pod.Containers[0].ReadinessProbe.HTTPGet.Path, 200)
		if state, code, err := ctr.State(); err != nil || state != "CONTAINER_RUNNING" {
			t.Errorf("container %s (exit %d, %v); log:\n%s", state, code, err, ctr.Log())
		}
	})
}

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/sandbox-guard/sandbox-guard/deploy"
	"github.com/sandbox-guard/sandbox-guard/internal/install"
	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// TestKubeletDaemonSet deploys both overlays the way deploy/README.md says, with `kubectl apply
// -k`, to a one-node cluster whose kubelet runs them on the node's containerd, and removes them
// with `kubectl delete -k`. The test's own kustomization names the overlay as its resource and
// changes only what a test node needs: the image (`make image`'s archive, imported into the
// node), the ConfigMap (checks the test controls, the node's paths), each hostPath's path (the
// node's copy of that directory: a test must not write the machine's /opt/nri or
// /etc/containerd), and the installer's --paths-root (the node's containerd finds its files below
// that directory). Asserted for each overlay: the pod spec kubelet ran is the manifest's, and the
// container's process has exactly the manifest's privileges and mounts (read from /proc, as runc
// set them up); its probes make it Ready; it gates pods, seen as FailedCreatePodSandBox events;
// and what `kubectl delete -k` leaves on the node.
func TestKubeletDaemonSet(t *testing.T) {
	env := harness.Load(t)
	archive := buildImage(t, env)
	installer, external := filepath.Join(env.RepoRoot, "deploy/overlays/installer"), filepath.Join(env.RepoRoot, "deploy/overlays/external")
	extObjs, err := deploy.Build(external)
	if err != nil {
		t.Fatal(err)
	}
	// main's external overlay stands by on the pre-registered plugin's lock (--standby-lock); an
	// older one yields to an installed binary, and two plugins would then share the metrics port.
	standby := slices.ContainsFunc(extObjs.DaemonSet.Spec.Template.Spec.Containers[0].Args, func(a string) bool {
		return strings.HasPrefix(a, "--standby-lock")
	})
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNodeWithConfig(t, env, c, harness.NodeOptions{}, func(n *harness.RootNode) {
			// The imports line is relative to config.toml (containerd resolves it so): it then names
			// the drop-ins both on the node and inside the pods, which mount the node's
			// /etc/containerd at /etc/containerd or /host/etc/containerd.
			must(t, os.WriteFile(n.ConfigFile, fmt.Appendf(nil, "version = %d\nimports = [\"config.d/*.toml\"]\n", c.ConfigVersion()), 0o644))
			must(t, os.WriteFile(filepath.Join(n.ConfigD(), "00-test.toml"), []byte(n.TestDropIn()), 0o644))
			// NRI on, at the node's paths, as containerd 2.x has it by default (1.7 needs it
			// switched on for the external overlay; the installer's drop-in does the same).
			dropIn, err := install.RenderDropInVersion(c.ConfigVersion(), n.Root)
			must(t, err)
			must(t, os.WriteFile(filepath.Join(n.ConfigD(), "00-nri.toml"), dropIn, 0o644))
		})
		k := harness.StartKube(t, n.Node, harness.KubeOptions{})
		k.LoadImage(archive)
		k.CreatePullSecret("default", "registry")
		app := n.Registry.PushApp(t, env, "e2e/app", "1")
		hostPath := func(p string) string {
			if p == "/opt/cni/bin" {
				return env.CNIBin // the node's CNI plugins are the cache's
			}
			return filepath.Join(n.Root, p)
		}
		at := func(p string) string { return filepath.Join(n.Root, p) }
		files := []string{at(install.PluginDir + "/" + install.PluginName), at(install.ConfigDir + "/" + install.ConfigName), at(install.DropInDir + "/" + install.DropInName)}

		// --- installer ---------------------------------------------------------------------
		marker := filepath.Join(n.Dir, "ready")
		preregisteredConfig := fmt.Sprintf(`mode: enforce
log: {file: %s, level: debug}
containerd: {address: %s, configFile: %s}
stateDir: %s
preset: none
refresh: {interval: 200ms}
checks:
  - name: marker
    file: {path: %s}
    hint: the test has not written its marker yet
`, n.PluginLog, n.Socket, n.ConfigFile, at("/var/lib/sandbox-guard"), marker)
		instArgs := []string{"--paths-root=" + n.Root}
		// The host directories the DaemonSets mount that the node does not have yet.
		var created []string
		for _, objs := range []*deploy.Objects{mustBuild(t, installer), extObjs} {
			for _, v := range objs.DaemonSet.Spec.Template.Spec.Volumes {
				if v.HostPath == nil {
					continue
				}
				if d := hostPath(v.HostPath.Path); strings.HasPrefix(d, n.Root+"/") && !isDir(d) && !slices.Contains(created, d) {
					created = append(created, d)
				}
			}
		}
		instDir, instObjs := k.Kustomization("installer", harness.DeployOptions{Overlay: installer, Image: imageRef,
			Config: preregisteredConfig, HostPath: hostPath, Args: instArgs})
		t.Logf("$ kubectl apply -k (installer)\n%s", k.MustKubectl("apply", "-k", instDir))
		pod := daemonSetPod(t, k, 2*time.Minute)
		harness.Eventually(t, time.Minute, "the installer's files on the node", func() error {
			for _, f := range files {
				if _, err := os.Stat(f); err != nil {
					return err
				}
			}
			return nil
		})
		if b, err := os.ReadFile(files[0]); err != nil || !slices.Equal(b, mustRead(t, env.Plugin)) {
			t.Errorf("%s is not the image's binary (%v)", files[0], err)
		}
		if got := readFile(t, files[1]); got != preregisteredConfig {
			t.Errorf("%s is not the ConfigMap's config.yaml:\n%s", files[1], got)
		}
		logs := k.MustKubectl("logs", "-n", "sandbox-guard", pod.Name)
		if strings.Count(logs, "created ") != 3 || strings.Contains(logs, "WARNING") {
			t.Errorf("installer log: want 3 files created and no warning:\n%s", logs)
		}
		checkDaemonSetPod(t, k, n, pod, instObjs, hostPath, instArgs)
		if harness.PodReady(pod) {
			t.Errorf("installer pod Ready before containerd ran the plugin")
		}
		// Installed, not running: containerd starts the plugin at its next start.
		applyWebPod(k, "web-1", app)
		k.WaitPodsReady("default", "app=web-1", 1, 2*time.Minute)

		n.Restart()
		k.WaitDaemonSetReady("sandbox-guard", "sandbox-guard", 2*time.Minute)
		applyWebPod(k, "web-2", app)
		ev := k.WaitPodEvent("default", "web-2", "FailedCreatePodSandBox", 2*time.Minute,
			"sandbox-guard: pod default/web-2 not started: node network not ready: marker: ", "(the test has not written its marker yet); kubelet will retry")
		t.Logf("%s, installer: the plugin it installed refuses web-2: %s: %s", c.Name, ev.Reason, ev.Message)
		must(t, os.WriteFile(marker, nil, 0o644))
		k.WaitPodsReady("default", "app=web-2", 1, 2*time.Minute)
		if ps, _ := k.Pods("default", "app=web-1"); len(ps) != 1 || len(ps[0].Status.ContainerStatuses) != 1 || ps[0].Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("web-1 was disturbed by containerd's restart: %+v", ps)
		}

		// kubectl delete -k removes the DaemonSet, not the plugin: the files stay on the node and
		// containerd runs the plugin on, gating, until its next start without them.
		must(t, os.Remove(marker))
		t.Logf("$ kubectl delete -k (installer)\n%s", k.DeleteKustomize(instDir))
		for _, f := range files {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("after kubectl delete -k: %v", err)
			}
		}
		applyWebPod(k, "web-3", app)
		k.WaitPodEvent("default", "web-3", "FailedCreatePodSandBox", 2*time.Minute, "sandbox-guard: pod default/web-3 not started", "marker: ")
		t.Logf("%s: after kubectl delete -k of the installer the node keeps %s and the plugin gates on", c.Name, strings.Join(files, ", "))

		// --- external ----------------------------------------------------------------------
		externalConfig := `mode: enforce
preset: none
refresh: {interval: 200ms}
# The image keeper is left out: kubelet_credentials_test runs it under kubelet.
sandboxImage: ""
checks:
  - name: nft-rules
    iptables: {table: nat, chain: SG-E2E-NFT, backend: nft}
    hint: the test has not created its nft chain yet
  - name: legacy-rules
    iptables: {table: filter, chain: SG-E2E-LEGACY, backend: legacy}
    hint: the test has not created its legacy chain yet
  - name: cni-config
    cni: {confDir: /etc/cni/net.d, binDirs: [/opt/cni/bin]}
`
		extDir, _ := k.Kustomization("external", harness.DeployOptions{Overlay: external, Image: imageRef,
			Config: externalConfig, HostPath: hostPath})
		if standby {
			// Both on the node: the external pod stands by while containerd runs the plugin.
			t.Logf("$ kubectl apply -k (external, the pre-registered plugin running)\n%s", k.MustKubectl("apply", "-k", extDir))
			k.WaitDaemonSetReady("sandbox-guard", "sandbox-guard", 2*time.Minute)
			ext := daemonSetPod(t, k, time.Minute)
			var line string
			k.WaitFor(time.Minute, "the external pod stands by", func() error {
				out, _ := k.Kubectl("logs", "-n", "sandbox-guard", ext.Name)
				for l := range strings.Lines(out) {
					if strings.Contains(l, "standing by") {
						line = strings.TrimSpace(l)
						return nil
					}
				}
				return fmt.Errorf("log:\n%s", out)
			})
			t.Logf("%s: the external pod, Ready, stands by while containerd runs the pre-registered plugin: %s", c.Name, line)
			evs, err := k.PodEvents("default", "web-3")
			must(t, err)
			for _, e := range evs {
				if strings.Contains(e.Message, "nft-rules") {
					t.Errorf("the standing-by external plugin gated web-3: %s", e.Message)
				}
			}
		} else {
			t.Logf("%s: stand-by not tested: this tree's external overlay has no --standby-lock", c.Name)
		}

		// Removing the plugin, as deploy/README.md says: the three files, then restart containerd.
		for _, f := range files {
			must(t, os.Remove(f))
		}
		n.Restart()
		if pids := preregisteredPids(n.Node); len(pids) > 0 {
			t.Errorf("after removing the files and restarting containerd, the plugin still runs: %v", pids)
		}
		if standby {
			// The pre-registered plugin ended with containerd; the external one took over.
			k.WaitPodEvent("default", "web-3", "FailedCreatePodSandBox", 2*time.Minute, "sandbox-guard: pod default/web-3 not started", "nft-rules: ")
		} else {
			k.WaitPodsReady("default", "app=web-3", 1, 2*time.Minute)
			t.Logf("$ kubectl apply -k (external)\n%s", k.MustKubectl("apply", "-k", extDir))
			k.WaitDaemonSetReady("sandbox-guard", "sandbox-guard", 2*time.Minute)
		}
		k.WaitDaemonSetReady("sandbox-guard", "sandbox-guard", 2*time.Minute)
		ext := daemonSetPod(t, k, time.Minute)
		checkDaemonSetPod(t, k, n, ext, extObjs, hostPath, nil)
		applyWebPod(k, "web-4", app)
		ev = k.WaitPodEvent("default", "web-4", "FailedCreatePodSandBox", 2*time.Minute,
			"sandbox-guard: pod default/web-4 not started: node network not ready: ",
			"nft-rules: iptables nat/SG-E2E-NFT missing", "legacy-rules: iptables filter/SG-E2E-LEGACY missing")
		if strings.Contains(ev.Message, "cni-config") {
			t.Errorf("the CNI check fails through the DaemonSet's CNI mounts: %s", ev.Message)
		}
		t.Logf("%s, external: the pod refuses web-4: %s: %s", c.Name, ev.Reason, ev.Message)
		n.NS.MustRun(t, "iptables-nft", "-t", "nat", "-N", "SG-E2E-NFT")
		n.NS.MustRun(t, "iptables-legacy", "-t", "filter", "-N", "SG-E2E-LEGACY")
		k.WaitPodsReady("default", "app=web-4", 1, 2*time.Minute)
		if standby {
			k.WaitPodsReady("default", "app=web-3", 1, 2*time.Minute)
		}

		// kubectl delete -k stops the plugin with its pod: nothing gates any more.
		n.NS.MustRun(t, "iptables-nft", "-t", "nat", "-X", "SG-E2E-NFT")
		t.Logf("$ kubectl delete -k (external)\n%s", k.DeleteKustomize(extDir))
		applyWebPod(k, "web-5", app)
		k.WaitPodsReady("default", "app=web-5", 1, 2*time.Minute)
		if evs, _ := k.PodEvents("default", "web-5"); slices.ContainsFunc(evs, func(e corev1.Event) bool { return e.Reason == "FailedCreatePodSandBox" }) {
			t.Errorf("web-5 was refused after kubectl delete -k of the external overlay: %+v", evs)
		}
		// Left on the node: the directories kubelet created for the hostPath volumes
		// (DirectoryOrCreate; kubelet never removes them) and the state directory's contents.
		var left []string
		for _, d := range created {
			entries, err := os.ReadDir(d)
			if err != nil {
				t.Errorf("after kubectl delete -k: %v", err)
				continue
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			left = append(left, fmt.Sprintf("%s [%s]", strings.TrimPrefix(d, n.Root), strings.Join(names, " ")))
		}
		t.Logf("%s: left on the node after kubectl delete -k of both overlays and the plugin's removal: %s", c.Name, strings.Join(left, ", "))
	})
}

// daemonSetPod waits until the DaemonSet's one pod runs its container, and returns it.
func daemonSetPod(t *testing.T, k *harness.Kube, timeout time.Duration) corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	k.WaitFor(timeout, "the DaemonSet's pod running", func() error {
		pods, err := k.Pods("sandbox-guard", "app.kubernetes.io/name=sandbox-guard")
		if err != nil {
			return err
		}
		var running []corev1.Pod
		for _, p := range pods {
			if p.DeletionTimestamp == nil && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil {
				running = append(running, p)
			}
		}
		if len(running) != 1 {
			return fmt.Errorf("%d pods, %d running", len(pods), len(running))
		}
		pod = running[0]
		return nil
	})
	return pod
}

// applyWebPod creates a pod-network pod of the test app, labelled app=<name>.
func applyWebPod(k *harness.Kube, name, image string) {
	k.Apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %[1]s, namespace: default, labels: {app: %[1]s}}
spec:
  imagePullSecrets: [{name: registry}]
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 2
  containers:
  - {name: app, image: %[2]s}
`, name, image))
}

// capability numbers (linux/capability.h) of the capabilities the overlays add.
var capabilityBits = map[corev1.Capability]uint{"NET_ADMIN": 12, "NET_RAW": 13}

// checkDaemonSetPod compares the pod kubelet ran with the overlay as built (host paths mapped
// by hostPath, args appended): the spec the API server stored, and what the kernel says about
// the container's process: uid, capabilities, no_new_privs, seccomp, a read-only root, and
// exactly the manifest's mounts, each read-only as declared and bound from the mapped path.
func checkDaemonSetPod(t *testing.T, k *harness.Kube, n *harness.RootNode, pod corev1.Pod, built *deploy.Objects, hostPath func(string) string, args []string) {
	t.Helper()
	want := built.DaemonSet.Spec.Template.Spec
	wc, got := want.Containers[0], pod.Spec
	if len(got.Containers) != 1 {
		t.Fatalf("pod has %d containers", len(got.Containers))
	}
	gc := got.Containers[0]
	for what, ok := range map[string]bool{
		"hostNetwork":                  got.HostNetwork == want.HostNetwork,
		"hostPID":                      got.HostPID == want.HostPID,
		"hostIPC":                      got.HostIPC == want.HostIPC,
		"dnsPolicy":                    got.DNSPolicy == want.DNSPolicy,
		"priorityClassName":            got.PriorityClassName == want.PriorityClassName,
		"serviceAccountName":           got.ServiceAccountName == want.ServiceAccountName,
		"automountServiceAccountToken": equality.Semantic.DeepEqual(got.AutomountServiceAccountToken, want.AutomountServiceAccountToken),
		"securityContext":              equality.Semantic.DeepEqual(gc.SecurityContext, wc.SecurityContext),
		"volumeMounts":                 equality.Semantic.DeepEqual(gc.VolumeMounts, wc.VolumeMounts),
		"resources":                    equality.Semantic.DeepEqual(gc.Resources, wc.Resources),
		"command":                      slices.Equal(gc.Command, wc.Command),
		"args":                         slices.Equal(gc.Args, append(slices.Clone(wc.Args), args...)),
		"image":                        gc.Image == imageRef,
	} {
		if !ok {
			t.Errorf("pod %s: %s differs from the manifest's", pod.Name, what)
		}
	}
	for _, p := range []struct {
		what      string
		got, want *corev1.Probe
	}{{"livenessProbe", gc.LivenessProbe, wc.LivenessProbe}, {"readinessProbe", gc.ReadinessProbe, wc.ReadinessProbe}} {
		if !equality.Semantic.DeepEqual(p.got, probeDefaults(p.want)) {
			t.Errorf("pod %s: %s %+v, the manifest's %+v", pod.Name, p.what, p.got, p.want)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range got.Volumes {
		volumes[v.Name] = v
	}
	if len(got.Volumes) != len(want.Volumes) {
		t.Errorf("pod %s: %d volumes, the manifest %d", pod.Name, len(got.Volumes), len(want.Volumes))
	}
	for _, w := range want.Volumes {
		g, ok := volumes[w.Name]
		switch {
		case !ok:
			t.Errorf("pod %s: no volume %s", pod.Name, w.Name)
		case w.HostPath != nil:
			if g.HostPath == nil || g.HostPath.Path != hostPath(w.HostPath.Path) || !equality.Semantic.DeepEqual(g.HostPath.Type, w.HostPath.Type) {
				t.Errorf("pod %s: volume %s is %+v, want hostPath %s (the node's %s), type %s", pod.Name, w.Name, g.VolumeSource, hostPath(w.HostPath.Path), w.HostPath.Path, *w.HostPath.Type)
			}
		case w.ConfigMap != nil:
			if g.ConfigMap == nil || !strings.HasPrefix(g.ConfigMap.Name, "sandbox-guard-config-") {
				t.Errorf("pod %s: volume %s is %+v, want the ConfigMap", pod.Name, w.Name, g.VolumeSource)
			}
		case w.EmptyDir != nil:
			if g.EmptyDir == nil || !equality.Semantic.DeepEqual(g.EmptyDir.SizeLimit, w.EmptyDir.SizeLimit) {
				t.Errorf("pod %s: volume %s is %+v, want %+v", pod.Name, w.Name, g.VolumeSource, w.VolumeSource)
			}
		default:
			t.Errorf("pod %s: volume %s: a kind this test does not know", pod.Name, w.Name)
		}
	}
	// Where each mount must come from: the mapped host directory, or kubelet's directory for the
	// pod's volume (<kubelet root>/pods/<uid>/volumes/<plugin>/<name>).
	type origin struct {
		host   string // a hostPath's directory on the node
		suffix string // the end of kubelet's volume directory
		ro     bool
	}
	mounts := map[string]origin{}
	for _, m := range wc.VolumeMounts {
		o := origin{ro: m.ReadOnly}
		switch v := volumes[m.Name]; {
		case v.HostPath != nil:
			o.host = v.HostPath.Path
		case v.ConfigMap != nil:
			o.suffix = "/volumes/kubernetes.io~configmap/" + m.Name
		case v.EmptyDir != nil:
			o.suffix = "/volumes/kubernetes.io~empty-dir/" + m.Name
		}
		mounts[m.MountPath] = o
	}

	id, err := k.ContainerID(pod.Namespace, pod.Name, wc.Name)
	must(t, err)
	proc, err := n.ContainerProcess(id)
	must(t, err)
	var caps uint64
	for _, c := range wc.SecurityContext.Capabilities.Add {
		bit, ok := capabilityBits[c]
		if !ok {
			t.Fatalf("the manifest adds capability %s, which this test does not know", c)
		}
		caps |= 1 << bit
	}
	if proc.UID != int(*wc.SecurityContext.RunAsUser) || proc.CapEff != caps || proc.CapPrm != caps || proc.CapBnd != caps {
		t.Errorf("pod %s's process: uid %d, capabilities effective %#x permitted %#x bounding %#x; want uid %d and exactly %#x (%v)",
			pod.Name, proc.UID, proc.CapEff, proc.CapPrm, proc.CapBnd, *wc.SecurityContext.RunAsUser, caps, wc.SecurityContext.Capabilities.Add)
	}
	if !proc.NoNewPrivs || proc.Seccomp != 2 {
		t.Errorf("pod %s's process: no_new_privs %v, seccomp mode %d; want no_new_privs (allowPrivilegeEscalation: false) and a filter (RuntimeDefault)", pod.Name, proc.NoNewPrivs, proc.Seccomp)
	}
	if root, ok := proc.Mounts["/"]; !ok || !root.ReadOnly {
		t.Errorf("pod %s's root file system is not read-only: %+v", pod.Name, root)
	}
	var extra []string
	for point, m := range proc.Mounts {
		switch {
		case point == "/" || point == "/etc/hosts" || point == "/etc/hostname" || point == "/etc/resolv.conf",
			point == "/proc" || point == "/dev" || point == "/sys",
			strings.HasPrefix(point, "/proc/") || strings.HasPrefix(point, "/dev/") || strings.HasPrefix(point, "/sys/"):
			continue // the runtime's own, in every container
		}
		o, declared := mounts[point]
		if !declared {
			extra = append(extra, point)
			continue
		}
		if m.ReadOnly != o.ro {
			t.Errorf("pod %s: %s is mounted read-only=%v, the manifest says %v", pod.Name, point, m.ReadOnly, o.ro)
		}
		// mountinfo names a bind mount's source by its path within its file system: the whole
		// path where that is the root file system, its end where /tmp is a file system of its own.
		if o.host != "" && (m.Root == "/" || !strings.HasSuffix(o.host, m.Root)) || o.suffix != "" && !strings.HasSuffix(m.Root, o.suffix) {
			t.Errorf("pod %s: %s is bound from %s, want %s%s", pod.Name, point, m.Root, o.host, o.suffix)
		}
	}
	for point := range mounts {
		if _, ok := proc.Mounts[point]; !ok {
			t.Errorf("pod %s: %s is not mounted", pod.Name, point)
		}
	}
	if len(extra) > 0 {
		t.Errorf("pod %s: mounts the manifest does not declare: %v", pod.Name, extra)
	}
	var seen []string
	for point, m := range proc.Mounts {
		if _, ok := mounts[point]; ok || point == "/" {
			seen = append(seen, fmt.Sprintf("%s (%s)", point, map[bool]string{true: "ro", false: "rw"}[m.ReadOnly]))
		}
	}
	slices.Sort(seen)
	t.Logf("pod %s as kubelet ran it: uid %d, capabilities %#x (effective, permitted and bounding), no_new_privs %v, seccomp mode %d, mounts %s",
		pod.Name, proc.UID, proc.CapEff, proc.NoNewPrivs, proc.Seccomp, strings.Join(seen, ", "))
}

// preregisteredPids lists the node's running pre-registered plugin processes.
func preregisteredPids(n *harness.Node) []int {
	var out []int
	for _, pid := range n.NS.Pids() {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || filepath.Base(exe) != install.PluginName {
			continue
		}
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(stat), ") Z ") {
			out = append(out, pid)
		}
	}
	return out
}

func mustBuild(t *testing.T, dir string) *deploy.Objects {
	t.Helper()
	objs, err := deploy.Build(dir)
	must(t, err)
	return objs
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return b
}

// probeDefaults returns the probe as the API server stores it: the defaults filled in.
func probeDefaults(p *corev1.Probe) *corev1.Probe {
	if p == nil {
		return nil
	}
	p = p.DeepCopy()
	if p.HTTPGet != nil && p.HTTPGet.Scheme == "" {
		p.HTTPGet.Scheme = corev1.URISchemeHTTP
	}
	for _, d := range []struct {
		f *int32
		v int32
	}{{&p.TimeoutSeconds, 1}, {&p.PeriodSeconds, 10}, {&p.SuccessThreshold, 1}, {&p.FailureThreshold, 3}} {
		if *d.f == 0 {
			*d.f = d.v
		}
	}
	return p
}

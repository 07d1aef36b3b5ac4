package harness

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Reboot simulates a reboot of the node while the control plane (another machine) runs on. The
// kubelet, containerd, the shims, the pre-registered plugin and every pod process are killed
// (SIGKILL: no graceful shutdown). What a node keeps in memory goes: containerd's state
// directory and runc's root (tmpfs under /run on a node) with the pods' network namespaces and
// rootfs mounts, kubelet's tmpfs volumes, the pods' cgroups, the CNI bridge. What is on disk
// stays: containerd's root (images, and the records of containers and sandboxes, which
// containerd recovers as stopped), kubelet's root, the pod logs, the CNI IPAM store. whileDown
// runs with the node down (to take away what the boot must restore, e.g. kube-proxy's rules);
// then containerd (which starts a pre-registered plugin) and the kubelet start again, as at boot.
func (k *Kube) Reboot(whileDown func()) {
	k.t.Helper()
	n := k.Node
	k.KillKubelet()
	n.crash()
	unmountUnder(k.KubeletRoot())
	if whileDown != nil {
		whileDown()
	}
	n.Start()
	k.StartKubelet()
}

// crash kills containerd, its shims and plugins and every pod process, and removes what a
// reboot removes (see Kube.Reboot).
func (n *Node) crash() {
	t := n.t
	t.Helper()
	if n.cmd != nil {
		_ = n.cmd.Process.Kill()
		_ = <-n.waitErr // killed: the exit status says no more than that
		n.cmd = nil
	}
	// Shims and the pre-registered plugin run in the node's namespace; the control plane and
	// the registry, which run there too, are another machine's and live on.
	for _, pid := range n.NS.pids() {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err == nil && (strings.HasPrefix(exe, n.C.BinDir+"/") || strings.HasPrefix(exe, n.PluginDir+"/")) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	killCgroup(n.cgroupParent)
	// containerd's state directory holds its plugins' io.containerd.* directories; the plugin's
	// stateDir (PluginBase) is in there too here and, like /var/lib/sandbox-guard on a node, stays.
	state := filepath.Join(n.Dir, "state")
	unmountUnder(state)
	gone, _ := filepath.Glob(filepath.Join(state, "io.containerd.*"))
	for _, dir := range append(gone, filepath.Join(n.Dir, "runc")) {
		unmountUnder(dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatalf("reboot: removing %s: %v", dir, err)
		}
	}
	_, _ = n.NS.Run("ip", "link", "del", "sg"+n.id) // CNI creates the bridge again
	Eventually(t, 10*time.Second, "node processes gone", func() error {
		for _, pid := range n.NS.pids() {
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			if err == nil && (strings.HasPrefix(exe, n.C.BinDir+"/") || strings.HasPrefix(exe, n.PluginDir+"/")) {
				return fmt.Errorf("pid %d (%s) still running", pid, exe)
			}
		}
		return nil
	})
}

// UninstallPlugin removes the pre-registered plugin's binary: containerd starts without it at
// its next start.
func (n *Node) UninstallPlugin() {
	if err := os.Remove(filepath.Join(n.PluginDir, "10-sandbox-guard")); err != nil && !os.IsNotExist(err) {
		n.t.Fatal(err)
	}
}

// The reboot scenario's Service: pods reach their dependency at ServiceIP:80 only through the
// DNAT rules kube-proxy would write (chain KUBE-SERVICES, a KUBE-SVC- chain per Service), to a
// backend listening on the node. Without the rules the address is unreachable.
const (
	DependencyIP    = "10.96.0.50"
	dependencyChain = "KUBE-SVC-SGE2EDEPENDENCY01"
)

// RebootApp is a Deployment whose pods, like many real services, exit 1 when a dependency behind
// a Service is unreachable at start (test/app), on a node whose kube-proxy rules a reboot loses.
type RebootApp struct {
	k        *Kube
	Name     string
	Replicas int
	backend  string // NodeIP:port of the dependency
	image    string
	// KubeletRetry is the plugin's kubeletRetry setting in PluginConfig ("" is the default).
	KubeletRetry string
}

// StartRebootApp pushes the app image, starts the dependency's backend on the node, writes the
// Service's rules and runs the Deployment until its replicas are Ready.
func StartRebootApp(t testing.TB, k *Kube, replicas int) *RebootApp {
	t.Helper()
	n := k.Node
	var l net.Listener
	if err := n.NS.Do(func() (err error) { l, err = net.Listen("tcp", NodeIP+":0"); return err }); err != nil {
		t.Fatalf("dependency backend: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed at cleanup
			}
			_ = c.Close()
		}
	}()
	a := &RebootApp{k: k, Name: "app", backend: l.Addr().String(), image: n.Registry.PushApp(t, n.Env, "e2e/app", "1")}
	k.CreatePullSecret("default", "registry")
	a.ServiceRules(true)
	a.Scale(replicas)
	return a
}

// Scale applies the Deployment with this many replicas and waits until all are Ready.
func (a *RebootApp) Scale(replicas int) {
	a.k.t.Helper()
	a.Replicas = replicas
	a.k.Apply(fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: default}
spec:
  replicas: %[2]d
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      imagePullSecrets: [{name: registry}]
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: %[3]s
        args: ["-require", "%[4]s:80", "-timeout", "1s"]
        resources: {requests: {cpu: 5m, memory: 8Mi}}
`, a.Name, replicas, a.image, DependencyIP))
	a.k.WaitPodsReady("default", "app="+a.Name, replicas, 5*time.Minute)
}

// ServiceRules writes (true) or removes (false) kube-proxy's rules for the dependency's Service,
// in one iptables-nft-restore transaction as kube-proxy does. Removing flushes the nat table, as
// a reboot leaves it.
func (a *RebootApp) ServiceRules(present bool) {
	t := a.k.t
	t.Helper()
	rules := "*nat\nCOMMIT\n"
	args := []string{}
	if present {
		args = append(args, "--noflush")
		rules = fmt.Sprintf(`*nat
:KUBE-SERVICES - [0:0]
:%[1]s - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SERVICES -d %[2]s/32 -p tcp -m tcp --dport 80 -j %[1]s
-A %[1]s -p tcp -m tcp -j DNAT --to-destination %[3]s
COMMIT
`, dependencyChain, DependencyIP, a.backend)
	}
	cmd := a.k.Node.NS.Command("iptables-nft-restore", args...)
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iptables-nft-restore: %v\n%s\n%s", err, out, rules)
	}
}

// PluginConfig is the plugin configuration of the reboot scenario: enforce, one check on
// kube-proxy's rules.
func (a *RebootApp) PluginConfig() string {
	retry := ""
	if a.KubeletRetry != "" {
		retry = "kubeletRetry: " + a.KubeletRetry + "\n"
	}
	return fmt.Sprintf(`mode: enforce
%s%spreset: none
checks:
  - name: kube-proxy-rules
    iptables: {table: nat, chain: KUBE-SERVICES, chainPrefix: KUBE-SVC-}
    hint: kube-proxy has not synced its rules yet
`, a.k.Node.PluginBase(), retry)
}

// RebootResult is what one reboot cost the Deployment, as kubectl and the kubelet's log show it.
type RebootResult struct {
	Pods int
	// Restarts is each pod's restartCount increase over the reboot. Every container restarts
	// once because of the reboot itself (kubelet starts it again in a new sandbox); the rest are
	// crashes: CrashRestarts sums restarts-1 over the pods.
	Restarts      map[string]int32
	CrashRestarts int
	// CrashLoopBackOff is how many pods were seen waiting in CrashLoopBackOff.
	CrashLoopBackOff int
	// FailedSandbox is the number of FailedCreatePodSandBox events (their counts) since the
	// reboot; SandboxMessage is one of their messages.
	FailedSandbox  int
	SandboxMessage string
	// Refusals is the number of sandboxes the kubelet's log shows failing ("CreatePodSandbox for
	// pod failed").
	Refusals int
	// From containerd's log: Attempts, how long each refused RunPodSandbox took (2.x sets up the
	// network and starts the pause container before NRI's hook refuses, then tears both down);
	// RetryWaits, from a refusal to the same pod's next RunPodSandbox (kubelet's back-off).
	Attempts, RetryWaits []time.Duration
	// NetworkDown is how long the rules stayed away after kubelet's start; ReadyAfter the time
	// from the rules' return until every pod was Ready (polled every 250 ms).
	NetworkDown, ReadyAfter time.Duration
	// SandboxAfter is, per pod, the time from the rules' return until containerd's log shows
	// its sandbox started (kubelet's next attempt), the part of ReadyAfter kubelet's retry sets.
	SandboxAfter []time.Duration
	Events       string // kubectl get events for the Deployment's pods, after the reboot
	Pods0        string // kubectl get pods while the network was down
}

// RebootOptions shape one reboot of the RebootApp.
type RebootOptions struct {
	// Guarded says sandbox-guard is pre-registered: the rules come back once kubelet's log shows
	// RefusalsPerPod (at least 1) refused sandboxes for every pod. Else they come back once every
	// pod waits in CrashLoopBackOff.
	Guarded        bool
	RefusalsPerPod int
}

// Reboot reboots the node (Kube.Reboot) with the Service's rules gone, waits until every pod has
// met the missing network (see RebootOptions), brings the rules back, as kube-proxy does once it
// runs, and waits until every pod is Ready.
func (a *RebootApp) Reboot(opts RebootOptions) RebootResult {
	k, t := a.k, a.k.t
	t.Helper()
	sel := "app=" + a.Name
	before := a.restarts()
	eventsBefore := a.sandboxEvents()
	kubeletLogBefore := fileSize(k.KubeletLog())
	containerdLogBefore := fileSize(k.Node.LogFile)
	k.Reboot(func() { a.ServiceRules(false) })
	booted := time.Now()

	res := RebootResult{Pods: a.Replicas, Restarts: map[string]int32{}}
	crashLooped := map[string]bool{}
	k.WaitFor(4*time.Minute, "every pod meets the missing network", func() error {
		pods, err := k.Pods("default", sel)
		if err != nil {
			return err
		}
		met := 0
		for _, p := range pods {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff" {
					crashLooped[p.Name] = true
				}
			}
		}
		if opts.Guarded {
			refused := refusedPods(readFrom(k.KubeletLog(), kubeletLogBefore))
			for _, p := range pods {
				if refused["default/"+p.Name] >= max(1, opts.RefusalsPerPod) {
					met++
				}
			}
		} else {
			for _, p := range pods {
				if crashLooped[p.Name] {
					met++
				}
			}
		}
		if met < a.Replicas {
			return fmt.Errorf("%d of %d pods met it", met, a.Replicas)
		}
		return nil
	})
	res.Pods0, _ = k.Kubectl("get", "pods", "-l", sel)
	a.ServiceRules(true)
	networkReady := time.Now()
	res.NetworkDown = networkReady.Sub(booted)
	k.WaitPodsReady("default", sel, a.Replicas, 5*time.Minute)
	res.ReadyAfter = time.Since(networkReady)

	pods, err := k.Pods("default", sel)
	must(t, err)
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff" {
				crashLooped[p.Name] = true
			}
			d := cs.RestartCount - before[p.Name]
			res.Restarts[p.Name] = d
			if d > 1 {
				res.CrashRestarts += int(d - 1)
			}
		}
	}
	res.CrashLoopBackOff = len(crashLooped)
	for name, ev := range a.sandboxEvents() {
		d := int(ev.Count) - int(eventsBefore[name].Count)
		res.FailedSandbox += d
		if res.SandboxMessage == "" && d > 0 { // an event of this reboot, not of an earlier one
			res.SandboxMessage = ev.Message
		}
	}
	for _, n := range refusedPods(readFrom(k.KubeletLog(), kubeletLogBefore)) {
		res.Refusals += n
	}
	for _, events := range sandboxLog(readFrom(k.Node.LogFile, containerdLogBefore)) {
		started := false
		for i, e := range events {
			if i > 0 && e.kind == "start" && events[i-1].kind == "failed" {
				res.RetryWaits = append(res.RetryWaits, e.at.Sub(events[i-1].at))
			}
			if i > 0 && e.kind == "failed" && events[i-1].kind == "start" {
				res.Attempts = append(res.Attempts, e.at.Sub(events[i-1].at))
			}
			if e.kind == "started" && !started && e.at.After(networkReady) {
				res.SandboxAfter = append(res.SandboxAfter, e.at.Sub(networkReady))
				started = true
			}
		}
	}
	for _, d := range [][]time.Duration{res.RetryWaits, res.Attempts, res.SandboxAfter} {
		slices.Sort(d)
	}
	res.Events, _ = k.Kubectl("get", "events", "--field-selector", "involvedObject.kind=Pod", "--sort-by", ".lastTimestamp")
	return res
}

// restarts maps each pod of the app to its container's restartCount.
func (a *RebootApp) restarts() map[string]int32 {
	pods, err := a.k.Pods("default", "app="+a.Name)
	must(a.k.t, err)
	out := map[string]int32{}
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			out[p.Name] = cs.RestartCount
		}
	}
	return out
}

// sandboxEvents returns the FailedCreatePodSandBox events of namespace default by name.
func (a *RebootApp) sandboxEvents() map[string]corev1.Event {
	events, err := a.k.Events("default")
	must(a.k.t, err)
	out := map[string]corev1.Event{}
	for _, e := range events {
		if e.Reason == "FailedCreatePodSandBox" {
			out[e.Name] = e
		}
	}
	return out
}

// kubelet logs a failed sandbox as
// E1206 08:50:00.123456   1234 kuberuntime_manager.go:1747] "CreatePodSandbox for pod failed" err=... pod="default/app-x"
var sandboxFailed = regexp.MustCompile(`^E(\d{4} \d{2}:\d{2}:\d{2}\.\d{6}) .*"CreatePodSandbox for pod failed".* pod="([^"]+)"`)

// sandboxFailures maps each pod to the times kubelet's log shows its sandbox failing.
func sandboxFailures(log string) map[string][]time.Time {
	out := map[string][]time.Time{}
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := sandboxFailed.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		at, err := time.Parse("0102 15:04:05.000000", m[1])
		if err != nil {
			continue
		}
		out[m[2]] = append(out[m[2]], at)
	}
	return out
}

// containerd logs each RunPodSandbox when it begins and when it ends (2.x; 1.7 prints the
// metadata as &PodSandboxMetadata{Name:app-x,...}):
//
//	time="..." level=info msg="RunPodSandbox for name:\"app-x\" uid:\"...\" namespace:\"default\" attempt:2"
//	time="..." level=error msg="RunPodSandbox for name:\"app-x\" ... attempt:2 failed, error" error="..."
//	time="..." level=info msg="RunPodSandbox for name:\"app-x\" ... returns sandbox id \"...\""
var runPodSandbox = regexp.MustCompile(`^time="([^"]+)".*msg="RunPodSandbox for \S*?[Nn]ame:(?:\\")?([a-z0-9.-]+)(.*)`)

type sandboxEvent struct {
	at   time.Time
	kind string // start, failed, started
}

// sandboxLog maps each pod to its RunPodSandbox events in containerd's log, in order.
func sandboxLog(log string) map[string][]sandboxEvent {
	out := map[string][]sandboxEvent{}
	for line := range strings.Lines(log) {
		m := runPodSandbox.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		kind := "start"
		switch {
		case strings.Contains(m[3], " failed, error"):
			kind = "failed"
		case strings.Contains(m[3], " returns sandbox id"):
			kind = "started"
		}
		out[m[2]] = append(out[m[2]], sandboxEvent{at, kind})
	}
	return out
}

func refusedPods(log string) map[string]int {
	out := map[string]int{}
	for pod, times := range sandboxFailures(log) {
		out[pod] = len(times)
	}
	return out
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// readFrom returns file p from offset on.
func readFrom(p string, offset int64) string {
	b, err := os.ReadFile(p)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// measureReboot is the reboot-recovery benchmark: a one-node cluster (harness.StartKube) on a
// containerd 2.x node, a Deployment whose app exits 1 when its dependency behind a Service is
// unreachable at start, and reboots of the node with kube-proxy's rules coming back only after
// the kubelet (harness.RebootApp), without and with sandbox-guard pre-registered, at 10 and 30
// pods, all in the same run and cluster.
func measureReboot(t testing.TB, s *section) error {
	env := harness.Load(t)
	c := env.Containerds[0]
	n := harness.StartNode(t, env, c, harness.NodeOptions{})
	k := harness.StartKube(t, n, harness.KubeOptions{})
	say("  cluster up: control plane ready %.1fs after etcd's start, node Ready %.1fs", k.ControlPlaneStartup.Seconds(), k.ClusterStartup.Seconds())
	sizes := []int{10, 30}
	if *quick {
		sizes = []int{3}
	}
	app := harness.StartRebootApp(t, k, sizes[0])
	s.methodf("One node: containerd %s started by the end-to-end harness in its own network namespace with runc, the CNI bridge "+
		"plugin and the auth registry, and a Kubernetes v1.37 control plane around it (etcd, kube-apiserver, kube-controller-manager, "+
		"kube-scheduler, with TLS and client certificates) and the real kubelet, registered to it (`harness.StartKube`; the control "+
		"plane was ready %.1f s after etcd's start, the node Ready %.1f s). A Deployment of N pods of the pod network runs an app that "+
		"connects at start to a Service's address (`%s:80`), reachable only through DNAT rules like kube-proxy's (nat `KUBE-SERVICES`, "+
		"a `KUBE-SVC-` chain) to a backend on the node, and exits 1 when it cannot.", c.Version, k.ControlPlaneStartup.Seconds(), k.ClusterStartup.Seconds(), harness.DependencyIP)
	s.methodf("A **reboot** (`Kube.Reboot`): the kubelet, containerd, the shims, the plugin and every pod process are killed; " +
		"containerd's state directory and runc's root (tmpfs on a node), the pods' network namespaces, mounts and cgroups and the CNI " +
		"bridge are removed; containerd's root (images, container and sandbox records), kubelet's root and the pod logs stay; " +
		"kube-proxy's rules are gone (the nat table flushed). containerd and the kubelet then start again. The rules come back, in one " +
		"`iptables-nft-restore` as kube-proxy writes them, once every pod has met the missing network: with sandbox-guard, once " +
		"kubelet's log shows two refused sandboxes for every pod (so that kubelet's retry interval can be measured); without, once every pod waits in `CrashLoopBackOff`. **network-ready -> " +
		"all Ready** is the time from the rules' return until `kubectl get pods` shows every pod Ready (polled every 250 ms). " +
		"**without**: no NRI plugin; **with**: sandbox-guard pre-registered (containerd starts it), `mode: enforce`, one check " +
		"(`iptables: {table: nat, chain: KUBE-SERVICES, chainPrefix: KUBE-SVC-}`). Both arms run one after the other in the same " +
		"cluster, first without, then with, for each N.")
	s.methodf("**Crash restarts**: each pod's `restartCount` increase over the reboot, minus 1: a reboot restarts every container " +
		"once by itself (kubelet starts it again in a new sandbox, and counts it), with or without sandbox-guard. **Failed sandbox " +
		"attempts**: kubelet's `FailedCreatePodSandBox` events (their counts, `kubectl get events`) and, in parentheses, the " +
		"`CreatePodSandbox for pod failed` lines of kubelet's log, which are not rate-limited.")
	s.printf("| N | sandbox-guard | crash restarts (pods crashed) | pods in CrashLoopBackOff | failed sandbox attempts: events (kubelet log) | rules gone after kubelet's start | network-ready -> sandboxes started, median / max | network-ready -> all Ready |\n|---|---|---|---|---|---|---|---|\n")

	var waits, attempts durations
	var firstMessage string
	var n10 struct {
		guardedCrashes int
		ready          time.Duration
		ok             bool
	}
	for _, size := range sizes {
		if size != app.Replicas {
			app.Scale(size)
		}
		for _, guarded := range []bool{false, true} {
			arm := "without"
			if guarded {
				arm = "with"
				n.InstallPlugin(app.PluginConfig())
			} else {
				n.UninstallPlugin()
			}
			say("  N=%d, %s sandbox-guard: rebooting", size, arm)
			// Two refusals per pod: one interval of kubelet's retry per pod to report.
			r := app.Reboot(harness.RebootOptions{Guarded: guarded, RefusalsPerPod: 2})
			crashed := 0
			for _, d := range r.Restarts {
				if d > 1 {
					crashed++
				}
			}
			say("  N=%d, %s: %d crash restarts (%d pods), %d in CrashLoopBackOff, %d FailedCreatePodSandBox (%d in kubelet's log), rules gone %s, all Ready %s after",
				size, arm, r.CrashRestarts, crashed, r.CrashLoopBackOff, r.FailedSandbox, r.Refusals, fmtDur(r.NetworkDown), fmtDur(r.ReadyAfter))
			started := "-" // without the plugin every sandbox started before the rules came back
			if sa := durations(r.SandboxAfter); len(sa) > 0 {
				started = fmt.Sprintf("%s / %s (%d pods)", fmtDur(sa.median()), fmtDur(sa.max()), len(sa))
			}
			say("  N=%d, %s: sandboxes started after the rules: %s", size, arm, started)
			s.printf("| %d | %s | %d (%d) | %d | %d (%d) | %s | %s | **%s** |\n", size, arm, r.CrashRestarts, crashed, r.CrashLoopBackOff,
				r.FailedSandbox, r.Refusals, fmtDur(r.NetworkDown), started, fmtDur(r.ReadyAfter))
			if guarded {
				waits, attempts = append(waits, r.RetryWaits...), append(attempts, r.Attempts...)
				if firstMessage == "" {
					firstMessage = r.SandboxMessage
				}
				if size == 10 {
					n10.guardedCrashes, n10.ready, n10.ok = r.CrashRestarts, r.ReadyAfter, true
				}
			}
		}
	}
	s.printf("\n")
	if len(waits) > 0 && len(attempts) > 0 {
		s.printf("From containerd's log, with sandbox-guard (all N): kubelet waited **%s** (median; min %s, max %s, %d waits) from a "+
			"refused `RunPodSandbox` to the same pod's next one, and a refused `RunPodSandbox` took %s (median; min %s, max %s, %d attempts): "+
			"containerd sets up the pod's network and starts its pause container before NRI's hook runs, and tears both down after "+
			"the refusal.\n\n", fmtDur(waits.median()), fmtDur(waits.min()), fmtDur(waits.max()), len(waits),
			fmtDur(attempts.median()), fmtDur(attempts.min()), fmtDur(attempts.max()), len(attempts))
		s.row("reboot: kubelet's wait after a refused sandbox (the floor of recovery)", fmt.Sprintf("median %s (min %s, max %s)",
			fmtDur(waits.median()), fmtDur(waits.min()), fmtDur(waits.max())), "", "")
		s.row("reboot: one refused RunPodSandbox (network, pause start, teardown)", fmt.Sprintf("median %s (min %s, max %s)",
			fmtDur(attempts.median()), fmtDur(attempts.min()), fmtDur(attempts.max())), "", "")
	}
	if firstMessage != "" {
		s.printf("What `kubectl get events` shows for a refused pod:\n\n```\n%s\n```\n\n", firstMessage)
	}
	if n10.ok {
		s.row("reboot, N=10, with sandbox-guard: crash restarts", fmt.Sprint(n10.guardedCrashes), "0", yesNo(n10.guardedCrashes == 0))
		s.row("reboot, N=10, with sandbox-guard: network-ready -> all Ready", fmtDur(n10.ready), "<= 15 s", yesNo(n10.ready <= 15*time.Second))
	}
	s.notef("kubelet retries a failed sandbox from its pod worker's back-off: 10 s with up to 50%% jitter (10-15 s; `backOffPeriod` and " +
		"`workerBackOffPeriodJitterFactor` in kubelet's pod_workers.go v1.37.2), or about 1 s when the error text contains " +
		"`network is not ready` (`NetworkNotReadyErrorMsg`), which every sandbox-guard rejection contains, so the 1 s retry applies). After the rules return, a refused pod starts with its next attempt: kubelet's wait plus one " +
		"`RunPodSandbox`, not sandbox-guard's check refresh (1 s), bound the recovery time. Both grow with the machine's load " +
		"(see the load average below).")
	s.notef("Without sandbox-guard the pods start at once and crash; kubelet's crash-loop back-off (10 s, doubling up to 5 minutes) " +
		"then decides when they start again after the network is back, so the recovery time grows with the time the network took.")
	if strings.TrimSpace(firstMessage) == "" {
		return fmt.Errorf("no FailedCreatePodSandBox event with sandbox-guard's reason was seen")
	}
	return nil
}

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
		"(`iptables: {table: nat, chain: KUBE-SERVICES, chainPrefix: KUBE-SVC-}`), `kubeletRetry` at its default `backoff`, and " +
		"again with `kubeletRetry: fast`. The arms run one after the other in the same cluster, in that order, for each N.")
	s.methodf("**Crash restarts**: each pod's `restartCount` increase over the reboot, minus 1: a reboot restarts every container " +
		"once by itself (kubelet starts it again in a new sandbox, and counts it), with or without sandbox-guard. **Failed sandbox " +
		"attempts**: kubelet's `FailedCreatePodSandBox` events (their counts, `kubectl get events`) and, in parentheses, the " +
		"`CreatePodSandbox for pod failed` lines of kubelet's log, which are not rate-limited.")
	s.printf("| N | sandbox-guard | crash restarts (pods crashed) | pods in CrashLoopBackOff | failed sandbox attempts: events (kubelet log) | rules gone after kubelet's start | network-ready -> sandboxes started, median / max | network-ready -> all Ready |\n|---|---|---|---|---|---|---|---|\n")

	type armResult struct {
		waits, attempts durations
		message         string
		n10Crashes      int
		n10Ready        time.Duration
		n10             bool
	}
	arms := []struct {
		name, retry string
		guarded     bool
	}{{"without", "", false}, {"with", "backoff", true}, {"with, `kubeletRetry: fast`", "fast", true}}
	results := map[string]*armResult{"backoff": {}, "fast": {}}
	for _, size := range sizes {
		if size != app.Replicas {
			app.Scale(size)
		}
		for _, arm := range arms {
			if arm.guarded {
				app.KubeletRetry = arm.retry
				n.InstallPlugin(app.PluginConfig())
			} else {
				n.UninstallPlugin()
			}
			say("  N=%d, %s sandbox-guard: rebooting", size, arm.name)
			// Two refusals per pod: one interval of kubelet's retry per pod to report.
			r := app.Reboot(harness.RebootOptions{Guarded: arm.guarded, RefusalsPerPod: 2})
			crashed := 0
			for _, d := range r.Restarts {
				if d > 1 {
					crashed++
				}
			}
			say("  N=%d, %s: %d crash restarts (%d pods), %d in CrashLoopBackOff, %d FailedCreatePodSandBox (%d in kubelet's log), rules gone %s, all Ready %s after",
				size, arm.name, r.CrashRestarts, crashed, r.CrashLoopBackOff, r.FailedSandbox, r.Refusals, fmtDur(r.NetworkDown), fmtDur(r.ReadyAfter))
			started := "-" // without the plugin every sandbox started before the rules came back
			if sa := durations(r.SandboxAfter); len(sa) > 0 {
				started = fmt.Sprintf("%s / %s (%d pods)", fmtDur(sa.median()), fmtDur(sa.max()), len(sa))
			}
			say("  N=%d, %s: sandboxes started after the rules: %s", size, arm.name, started)
			s.printf("| %d | %s | %d (%d) | %d | %d (%d) | %s | %s | **%s** |\n", size, arm.name, r.CrashRestarts, crashed, r.CrashLoopBackOff,
				r.FailedSandbox, r.Refusals, fmtDur(r.NetworkDown), started, fmtDur(r.ReadyAfter))
			if res := results[arm.retry]; arm.guarded {
				res.waits, res.attempts = append(res.waits, r.RetryWaits...), append(res.attempts, r.Attempts...)
				if res.message == "" {
					res.message = r.SandboxMessage
				}
				if size == 10 {
					res.n10Crashes, res.n10Ready, res.n10 = r.CrashRestarts, r.ReadyAfter, true
				}
			}
		}
	}
	s.printf("\n")
	for _, retry := range []string{"backoff", "fast"} {
		res := results[retry]
		if len(res.waits) == 0 || len(res.attempts) == 0 {
			continue
		}
		s.printf("From containerd's log, with sandbox-guard and `kubeletRetry: %s` (all N): kubelet waited **%s** (median; min %s, max %s, %d waits) from a "+
			"refused `RunPodSandbox` to the same pod's next one, and a refused `RunPodSandbox` took %s (median; min %s, max %s, %d attempts): "+
			"containerd sets up the pod's network and starts its pause container before NRI's hook runs, and tears both down after "+
			"the refusal.\n\n", retry, fmtDur(res.waits.median()), fmtDur(res.waits.min()), fmtDur(res.waits.max()), len(res.waits),
			fmtDur(res.attempts.median()), fmtDur(res.attempts.min()), fmtDur(res.attempts.max()), len(res.attempts))
		s.row("reboot, kubeletRetry "+retry+": kubelet's wait after a refused sandbox (the floor of recovery)", fmt.Sprintf("median %s (min %s, max %s)",
			fmtDur(res.waits.median()), fmtDur(res.waits.min()), fmtDur(res.waits.max())), "", "")
		s.row("reboot, kubeletRetry "+retry+": one refused RunPodSandbox (network, pause start, teardown)", fmt.Sprintf("median %s (min %s, max %s)",
			fmtDur(res.attempts.median()), fmtDur(res.attempts.min()), fmtDur(res.attempts.max())), "", "")
	}
	for _, retry := range []string{"backoff", "fast"} {
		if m := results[retry].message; m != "" {
			s.printf("What `kubectl get events` shows for a refused pod, `kubeletRetry: %s`:\n\n```\n%s\n```\n\n", retry, m)
		}
	}
	for _, retry := range []string{"backoff", "fast"} {
		if res := results[retry]; res.n10 {
			s.row("reboot, N=10, with sandbox-guard, kubeletRetry "+retry+": crash restarts", fmt.Sprint(res.n10Crashes), "0", yesNo(res.n10Crashes == 0))
			s.row("reboot, N=10, with sandbox-guard, kubeletRetry "+retry+": network-ready -> all Ready", fmtDur(res.n10Ready), "<= 15 s", yesNo(res.n10Ready <= 15*time.Second))
		}
	}
	s.notef("kubelet retries a failed sandbox from its pod worker's back-off: 10 s with up to 50%% jitter (10-15 s; `backOffPeriod` and " +
		"`workerBackOffPeriodJitterFactor` in kubelet's pod_workers.go v1.37.2), or about 1 s when the error text contains " +
		"`network is not ready` (`NetworkNotReadyErrorMsg`), which sandbox-guard's rejections contain with `kubeletRetry: fast`. " +
		"After the rules return, a refused pod starts with its next attempt: kubelet's wait plus one " +
		"`RunPodSandbox`, not sandbox-guard's check refresh (1 s), bound the recovery time. Both grow with the machine's load " +
		"(see the load average below). The price of `fast`: while the network is down every waiting pod costs containerd one " +
		"attempt (network setup, pause start, teardown) about every second instead of every 10-15 s; compare the attempts' " +
		"durations and the failed attempts of both arms.")
	s.notef("Without sandbox-guard the pods start at once and crash; kubelet's crash-loop back-off (10 s, doubling up to 5 minutes) " +
		"then decides when they start again after the network is back, so the recovery time grows with the time the network took.")
	if strings.TrimSpace(results["backoff"].message) == "" {
		return fmt.Errorf("no FailedCreatePodSandBox event with sandbox-guard's reason was seen")
	}
	return nil
}

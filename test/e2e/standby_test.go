package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// Faults of the plugin itself, with an external plugin keeping a standing watch
// (`run --standby-lock`): the pre-registered plugin killed (kill -9) or stopped (SIGSTOP). The
// README's "Plugin killed or stopped" states what these tests assert.

// watchMetrics is the external plugin's metrics address: the pre-registered plugin has the
// default one on the node's loopback.
const watchMetrics = "127.0.0.1:9810"

// watchConfig is the external plugin's configuration: a check of its own (ext-ready), so that
// a rejection names the plugin that made it (the pre-registered plugin's is "marker").
func watchConfig(n *harness.Node) string {
	return fmt.Sprintf(`mode: enforce
%spreset: none
refresh: {interval: 200ms}
metrics: {address: %q}
checks:
  - name: ext-ready
    file: {path: %s}
    hint: the test has not written the external plugin's marker yet
`, n.PluginBase(), watchMetrics, filepath.Join(n.Dir, "ext-ready"))
}

// startWatch starts a node whose pre-registered plugin enforces a failing check, and an external
// plugin standing watch on its lock; it returns once the external plugin stands by, with the
// pre-registered plugin's process ID and how long a pod rejected by it took (the baseline).
func startWatch(t *testing.T, c harness.Containerd) (*harness.Node, *harness.ExternalPlugin, int, time.Duration) {
	t.Helper()
	env := harness.Load(t)
	n := harness.StartNode(t, env, c, harness.NodeOptions{PluginConfig: markerConfig("enforce")})
	pid := n.PreRegisteredPID()
	if pid == 0 {
		t.Fatal("containerd runs no pre-registered plugin")
	}
	ext := n.StartExternalPlugin(watchConfig(n), "--standby-lock="+n.StandbyLock())
	waitLog(t, ext, fmt.Sprintf("standing by: pre-registered sandbox-guard holds %s (pid %d)", n.StandbyLock(), pid))
	wantReadyz(t, n, 200, "standing by: pre-registered sandbox-guard holds "+n.StandbyLock())
	wantMetric(t, n, "sandbox_guard_standing_by 1")
	// One plugin gates: the pre-registered one.
	start := time.Now()
	_, err := n.CRI.RunP(harness.Pod{Name: "before"})
	baseline := time.Since(start)
	wantRejection(t, err, "default/before", "marker: ")
	if strings.Contains(err.Error(), "ext-ready") {
		t.Errorf("the standing-by plugin gates too: %v", err)
	}
	return n, ext, pid, baseline
}

// takeover is what happened from a moment on (the pre-registered plugin gone) until the
// external plugin gated.
type takeover struct {
	registered time.Duration // until the external plugin had registered with containerd
	rejected   time.Duration // until the first pod rejected by it was answered
	admitted   []string      // pods admitted meanwhile (no plugin connected: NRI admits)
}

func (to takeover) String() string {
	return fmt.Sprintf("external plugin registered after %v, first rejection by it answered after %v, admitted meanwhile %d %v",
		to.registered.Round(time.Millisecond), to.rejected.Round(time.Millisecond), len(to.admitted), to.admitted)
}

// takeOver starts pods one after another from since on, until one is rejected by the external
// plugin, while watching the external plugin's log for its registration (its connects-th
// registration, counting from 0). It fails the test when a pod is admitted although the external
// plugin had registered before the pod started.
func takeOver(t *testing.T, n *harness.Node, ext *harness.ExternalPlugin, since time.Time, connects int) takeover {
	t.Helper()
	registered := make(chan time.Duration, 1)
	go func() { // polls the log every 5 ms: the registration takes some 100 ms
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if strings.Count(ext.Log(), "connected to the container runtime") > connects || time.Since(since) > 15*time.Second {
				registered <- time.Since(since)
				return
			}
		}
	}()
	var to takeover
	for i := 0; ; i++ {
		if time.Since(since) > 10*time.Second {
			t.Fatalf("no rejection by the external plugin 10 s on; admitted meanwhile %v; its log:\n%s", to.admitted, ext.Log())
		}
		name := fmt.Sprintf("meanwhile-%d", i)
		wasRegistered := strings.Count(ext.Log(), "connected to the container runtime") > connects
		_, err := n.CRI.RunP(harness.Pod{Name: name})
		switch {
		case err == nil:
			to.admitted = append(to.admitted, name)
			if wasRegistered {
				t.Errorf("pod %s admitted although the external plugin had registered before it started", name)
			}
		case strings.Contains(err.Error(), "marker: "):
			// The pre-registered plugin answered: it was not gone yet.
		case strings.Contains(err.Error(), "sandbox-guard: pod default/"+name):
			// "ext-ready: ..." or, before its first check, "not checked yet".
			to.rejected = time.Since(since)
			to.registered = <-registered
			return to
		default:
			t.Fatalf("runp %s: %v", name, err)
		}
	}
}

// gatedByExternal asserts that the external plugin gates every pod now: rejected for its own
// check, none admitted.
func gatedByExternal(t *testing.T, n *harness.Node) {
	t.Helper()
	for i := range 3 {
		_, err := n.CRI.RunP(harness.Pod{Name: fmt.Sprintf("gated-%d", i)})
		wantRejection(t, err, "ext-ready: ")
	}
}

// A pre-registered plugin killed with kill -9 (a crash: containerd never restarts it): the
// external plugin takes over within 2 s, and stands by again once containerd's next start
// brings the pre-registered plugin back.
func TestStandingWatchTakesOverFromAKilledPlugin(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		n, ext, pid, baseline := startWatch(t, c)
		must(t, syscall.Kill(pid, syscall.SIGKILL))
		to := takeOver(t, n, ext, time.Now(), 0)
		t.Logf("%s: kill -9 of the pre-registered plugin, then: %v (a rejected pod took %v before the kill)", c.Name, to, baseline.Round(time.Millisecond))
		if to.registered > 2*time.Second {
			t.Errorf("the external plugin took %v to take over, want at most 2 s", to.registered)
		}
		waitLog(t, ext, "taking over: no pre-registered sandbox-guard holds "+n.StandbyLock()+"; connecting to containerd")
		gatedByExternal(t, n)
		wantReadyz(t, n, 200, "ok")
		wantMetric(t, n, "sandbox_guard_standing_by 0")
		wantMetric(t, n, "sandbox_guard_nri_connected 1")
		must(t, os.WriteFile(filepath.Join(n.Dir, "ext-ready"), nil, 0o644))
		admitted(t, n, "ext-ok", 5*time.Second)

		// containerd's next start brings the pre-registered plugin back (it takes its lock in
		// Configure, before containerd accepts external plugins): the external one stands by
		// again without ever connecting to the new containerd.
		connects := strings.Count(ext.Log(), "connected to the container runtime")
		n.Restart()
		newPID := n.PreRegisteredPID()
		waitLog(t, ext, fmt.Sprintf("standing by: pre-registered sandbox-guard holds %s (pid %d)", n.StandbyLock(), newPID))
		_, err := n.CRI.RunP(harness.Pod{Name: "after-restart"})
		wantRejection(t, err, "default/after-restart", "marker: ")
		if got := strings.Count(ext.Log(), "connected to the container runtime"); got != connects {
			t.Errorf("the external plugin connected to the restarted containerd (%d connections, was %d) although the pre-registered plugin is back", got, connects)
		}
		wantReadyz(t, n, 200, "standing by: ")
		wantMetric(t, n, "sandbox_guard_standing_by 1")
	})
}

// A pre-registered plugin stopped (SIGSTOP). Stopped and continued with no pod in between:
// containerd does not notice and nothing changes. Stopped while a pod starts: NRI's 2 s request
// timeout admits that pod (fail open: no released containerd honours the plugin's failure
// policy), closes the plugin's connection and kills the stopped process (NRI's plugin.stop
// sends SIGKILL), which releases the lock: the external plugin takes over. SIGCONT then finds
// no process.
func TestStandingWatchWithAStoppedPlugin(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		n, ext, pid, baseline := startWatch(t, c)

		must(t, syscall.Kill(pid, syscall.SIGSTOP))
		waitState(t, pid, "T")
		wantReadyz(t, n, 200, "standing by: ") // a stopped process still holds its lock
		must(t, syscall.Kill(pid, syscall.SIGCONT))
		harness.Eventually(t, 10*time.Second, "plugin continued", func() error {
			if s := harness.ProcessState(pid); s == "T" || s == "" {
				return fmt.Errorf("state %q", s)
			}
			return nil
		})
		_, err := n.CRI.RunP(harness.Pod{Name: "continued"})
		wantRejection(t, err, "default/continued", "marker: ")
		if strings.Contains(ext.Log(), "taking over") {
			t.Errorf("the external plugin took over from a plugin stopped and continued while no pod started:\n%s", ext.Log())
		}

		must(t, syscall.Kill(pid, syscall.SIGSTOP))
		waitState(t, pid, "T")
		start := time.Now()
		_, err = n.CRI.RunP(harness.Pod{Name: "while-stopped"})
		stalled := time.Since(start)
		t.Logf("%s: a pod started while the pre-registered plugin is stopped: %v after %v", c.Name, err, stalled.Round(time.Millisecond))
		if err != nil {
			t.Errorf("the pod started while the plugin is stopped: %v; want it admitted after NRI's 2 s request timeout (fail open)", err)
		}
		if stalled < 2*time.Second {
			t.Errorf("the pod was answered after %v, before NRI's 2 s request timeout", stalled)
		}
		to := takeOver(t, n, ext, start.Add(stalled), 0)
		t.Logf("%s: the timed-out pod answered, then: %v (a rejected pod took %v before)", c.Name, to, baseline.Round(time.Millisecond))
		if to.registered > 2*time.Second {
			t.Errorf("the external plugin took %v to take over, want at most 2 s", to.registered)
		}
		// containerd closed the stopped plugin's connection and killed it.
		closing := ""
		for line := range strings.Lines(readFile(t, n.LogFile)) {
			if strings.Contains(line, "closing plugin") {
				closing = strings.TrimSpace(line)
			}
		}
		if closing == "" {
			t.Errorf("containerd has not logged closing the plugin; log:\n%s", n.Tail(20))
		}
		t.Logf("%s logged: %s", c.Name, closing)
		harness.WaitGone(t, pid, 10*time.Second)
		waitLog(t, ext, "taking over: no pre-registered sandbox-guard holds "+n.StandbyLock())

		// SIGCONT: nothing left to continue; the external plugin gates until containerd's next
		// start brings the pre-registered plugin back.
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && err != syscall.ESRCH {
			t.Errorf("SIGCONT: %v", err)
		}
		if s := harness.ProcessState(pid); s != "" && s != "Z" {
			t.Errorf("the stopped plugin still runs after SIGCONT (state %s)", s)
		}
		gatedByExternal(t, n)
		must(t, os.WriteFile(filepath.Join(n.Dir, "ext-ready"), nil, 0o644))
		admitted(t, n, "recovered", 5*time.Second)
		wantReadyz(t, n, 200, "ok")
	})
}

func waitLog(t *testing.T, p *harness.ExternalPlugin, line string) {
	t.Helper()
	harness.Eventually(t, 20*time.Second, "external plugin logs "+line, func() error {
		if !strings.Contains(p.Log(), line) {
			return fmt.Errorf("not logged; log:\n%s", p.Log())
		}
		return nil
	})
}

func waitState(t *testing.T, pid int, state string) {
	t.Helper()
	harness.Eventually(t, 10*time.Second, fmt.Sprintf("process %d in state %s", pid, state), func() error {
		if s := harness.ProcessState(pid); s != state {
			return fmt.Errorf("state %q", s)
		}
		return nil
	})
}

// wantReadyz waits until the external plugin's /readyz answers code with a body starting with
// prefix.
func wantReadyz(t *testing.T, n *harness.Node, code int, prefix string) {
	t.Helper()
	client := n.NS.HTTPClient()
	harness.Eventually(t, 10*time.Second, "external plugin's /readyz", func() error {
		resp, err := client.Get("http://" + watchMetrics + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != code || !strings.HasPrefix(string(body), prefix) {
			return fmt.Errorf("/readyz answered %d %q, want %d %q...", resp.StatusCode, body, code, prefix)
		}
		return nil
	})
}

// wantMetric waits until the external plugin's /metrics has line.
func wantMetric(t *testing.T, n *harness.Node, line string) {
	t.Helper()
	client := n.NS.HTTPClient()
	harness.Eventually(t, 10*time.Second, "external plugin's metric "+line, func() error {
		resp, err := client.Get("http://" + watchMetrics + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), "\n"+line+"\n") {
			return fmt.Errorf("no line %q", line)
		}
		return nil
	})
}

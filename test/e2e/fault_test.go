package e2e

import (
	"strings"
	"testing"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// containerd restarted ten times in a row: the external plugin reconnects each time and keeps
// gating, and what it holds (open files, threads) does not grow with the restarts.
func TestExternalPluginSurvivesTenContainerdRestarts(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{})
		p := n.StartExternalPlugin(markerConfig("enforce")(n))
		p.WaitConnected(1)
		rejected := func(round int) {
			t.Helper()
			if _, err := n.CRI.RunP(harness.Pod{Name: "web"}); err == nil || !strings.Contains(err.Error(), "sandbox-guard:") {
				t.Fatalf("after restart %d: runp = %v, want a sandbox-guard rejection", round, err)
			}
		}
		rejected(0)
		fds, threads := p.OpenFiles(), p.Threads()
		for i := 1; i <= 10; i++ {
			n.Restart()
			p.WaitConnected(i + 1)
			rejected(i)
		}
		if got := p.OpenFiles(); got > fds+2 {
			t.Errorf("open files grew from %d to %d over 10 restarts", fds, got)
		}
		if got := p.Threads(); got > threads+4 {
			t.Errorf("threads grew from %d to %d over 10 restarts", threads, got)
		}
		t.Logf("after 10 restarts: %d open files (was %d), %d threads (was %d)", p.OpenFiles(), fds, p.Threads(), threads)
	})
}

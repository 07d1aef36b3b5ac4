package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"
	"go.uber.org/goleak"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/gate"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

func TestMain(m *testing.M) {
	// lumberjack's compression goroutine outlives Close (a known lumberjack limitation): one per
	// log file, not per configuration.
	// containerd's dialer keeps retrying an absent socket until its own timeout, after Close
	// (`check` against a containerd that is not there).
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"),
		goleak.IgnoreTopFunction("github.com/containerd/containerd/v2/pkg/dialer.timeoutDialer"),
		goleak.IgnoreTopFunction("github.com/containerd/containerd/v2/pkg/dialer.timeoutDialer.func1"))
}

const hint = "the network agent writes it when ready"

// testConfig has one check, that marker exists, and nothing else that reaches outside the test.
func testConfig(t *testing.T, marker string, mutate func(*config.Config)) *config.Config {
	t.Helper()
	doc := "preset: none\nsandboxImage: \"\"\nrefresh: {interval: 10m, maxBackoff: 10m, timeout: 1s}\n" +
		"containerd: {configFile: " + filepath.Join(t.TempDir(), "absent.toml") + ", address: " + filepath.Join(t.TempDir(), "absent.sock") + "}\n" +
		"checks:\n- name: marker\n  hint: " + hint + "\n  file: {path: " + marker + "}\n"
	cfg, err := config.Parse([]byte(doc), "test")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	return cfg
}

// testContext carries a logger that records what is logged.
func testContext(t *testing.T) (context.Context, *logtest.Hook) {
	t.Helper()
	l, h := testutil.CaptureLogger()
	ctx, cancel := context.WithCancel(testutil.Context(l))
	t.Cleanup(cancel)
	return ctx, h
}

func podNet() gate.Pod {
	return gate.Pod{Namespace: "default", Name: "web", UID: "u1", Labels: map[string]string{"app": "web"}}
}

var waitFor = testutil.WaitFor

func TestGateOffUntilApplied(t *testing.T) {
	s := New("test", nil)
	if err := s.Admit(context.Background(), podNet()); err != nil {
		t.Errorf("Admit before any configuration = %v, want admitted (gate off)", err)
	}
	if st := s.Status(); st.Checks != nil || st.Ready() {
		t.Errorf("Status with the gate off = %+v", st)
	}
	if err := s.ContainerdReachable(context.Background()); err == nil || !strings.Contains(err.Error(), "gate off") {
		t.Errorf("ContainerdReachable with the gate off = %v", err)
	}
	s.Stop() // nothing running: returns
}

// Apply starts the workers; the hook answers from what they publish, and a rejection kicks a
// refresh so that a condition that has just cleared is seen long before the next interval (10
// minutes here).
func TestApplyGatesAndKicks(t *testing.T) {
	for _, mode := range []config.Mode{config.ModeEnforce, config.ModeWarn} {
		t.Run(string(mode), func(t *testing.T) {
			ctx, _ := testContext(t)
			marker := filepath.Join(t.TempDir(), "ready")
			s := New("test", nil)
			if err := s.Apply(ctx, testConfig(t, marker, func(c *config.Config) { c.Mode = mode }), Runtime{}); err != nil {
				t.Fatal(err)
			}
			defer s.Stop()
			waitFor(t, "the first refresh", func() bool { return s.Status().Checks != nil })
			first := s.Status().Checks
			if first.Ready() {
				t.Fatal("ready without the marker")
			}
			err := s.Admit(ctx, podNet())
			if (mode == config.ModeEnforce) != (err != nil) {
				t.Fatalf("mode %s: Admit = %v", mode, err)
			}
			if err := os.WriteFile(marker, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a refresh that sees the marker", func() bool {
				_ = s.Admit(ctx, podNet())
				c := s.Status().Checks
				return c != first && c.Ready()
			})
			if err := s.Admit(ctx, podNet()); err != nil {
				t.Errorf("Admit once ready = %v", err)
			}
		})
	}
}

// Admitted pods do not kick: with the gate open, nothing refreshes before the interval.
func TestAdmittedPodsDoNotKick(t *testing.T) {
	ctx, _ := testContext(t)
	marker := filepath.Join(t.TempDir(), "ready")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := New("test", nil)
	if err := s.Apply(ctx, testConfig(t, marker, nil), Runtime{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first refresh", func() bool { return s.Status().Checks != nil })
	before := s.Status().Checks
	if !before.Ready() {
		t.Fatalf("first refresh not ready: %+v", before)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := s.Admit(ctx, podNet()); err != nil {
			t.Fatal(err)
		}
	}
	g := s.gen.Load()
	s.Stop()
	if g.store.Load() != before {
		t.Error("an admitted pod triggered a refresh")
	}
}

// A new configuration replaces the running one whole: the old workers stop (goleak checks
// that none is left), the hook follows the new mode at once.
func TestApplyReplacesGeneration(t *testing.T) {
	ctx, _ := testContext(t)
	marker := filepath.Join(t.TempDir(), "ready")
	s := New("test", nil)
	defer s.Stop()
	if err := s.Apply(ctx, testConfig(t, marker, nil), Runtime{}); err != nil {
		t.Fatal(err)
	}
	old := s.gen.Load()
	waitFor(t, "the first refresh", func() bool { return s.Status().Checks != nil })
	if err := s.Admit(ctx, podNet()); err == nil {
		t.Fatal("enforce admitted a pod without the marker")
	}
	if err := s.Apply(ctx, testConfig(t, marker, func(c *config.Config) { c.Mode = config.ModeOff }), Runtime{}); err != nil {
		t.Fatal(err)
	}
	if s.gen.Load() == old {
		t.Fatal("Apply kept the old generation")
	}
	if err := s.Admit(ctx, podNet()); err != nil {
		t.Errorf("mode off after reconfiguration: Admit = %v", err)
	}
	select {
	case <-waitDone(old):
	case <-time.After(10 * time.Second):
		t.Fatal("the old generation's workers still run")
	}
}

func waitDone(g *generation) <-chan struct{} {
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	return done
}

// A configuration that cannot be built turns the gate off (and says so), never keeps gating
// with an old one silently.
func TestApplyBadConfigTurnsGateOff(t *testing.T) {
	ctx, _ := testContext(t)
	marker := filepath.Join(t.TempDir(), "ready")
	s := New("test", nil)
	defer s.Stop()
	if err := s.Apply(ctx, testConfig(t, marker, nil), Runtime{}); err != nil {
		t.Fatal(err)
	}
	bad := testConfig(t, marker, func(c *config.Config) {
		c.Exempt.PodSelector = &config.LabelSelector{MatchExpressions: []config.LabelSelectorRequirement{{Key: "a", Operator: "Like"}}}
	})
	err := s.Apply(ctx, bad, Runtime{})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("Apply(invalid podSelector) = %v, want ErrConfig", err)
	}
	if s.gen.Load() != nil {
		t.Error("the previous configuration still gates after a failed Apply")
	}
	if err := s.Admit(ctx, podNet()); err != nil {
		t.Errorf("gate off: Admit = %v", err)
	}
}

func TestStopWhenContextEnds(t *testing.T) {
	ctx, _ := testContext(t)
	ctx, cancel := context.WithCancel(ctx)
	s := New("test", nil)
	if err := s.Apply(ctx, testConfig(t, "/nonexistent/marker", nil), Runtime{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first refresh", func() bool { return s.Status().Checks != nil })
	cancel() // the parent context ends the workers too
	done := make(chan struct{})
	go func() { s.Stop(); s.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return")
	}
}

func TestCheck(t *testing.T) {
	ctx, _ := testContext(t)
	marker := filepath.Join(t.TempDir(), "ready")
	st, err := Check(ctx, testConfig(t, marker, nil))
	if err != nil {
		t.Fatal(err)
	}
	rows := st.Rows()
	if st.Ready() || len(rows) != 1 || rows[0].Name != "marker" || rows[0].Kind != "file" || rows[0].Hint != hint || rows[0].Informational {
		t.Errorf("Check = %+v, rows %+v", st, rows)
	}
	if _, err := Check(ctx, testConfig(t, marker, func(c *config.Config) {
		c.Exempt.PodSelector = &config.LabelSelector{MatchExpressions: []config.LabelSelectorRequirement{{Key: "a", Operator: "Like"}}}
	})); !errors.Is(err, ErrConfig) {
		t.Errorf("Check(invalid podSelector) = %v, want ErrConfig", err)
	}
}

// With images configured but containerd's configuration unreadable, the images row says why
// the keeper cannot start instead of "starting".
func TestCheckShowsWhyTheKeeperCannotStart(t *testing.T) {
	ctx, _ := testContext(t)
	marker := filepath.Join(t.TempDir(), "ready")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := Check(ctx, testConfig(t, marker, func(c *config.Config) { c.SandboxImage = "auto" }))
	if err != nil {
		t.Fatal(err)
	}
	rows := st.Rows()
	if len(rows) != 3 || rows[2].Name != "images" || !rows[2].Informational || rows[2].OK ||
		!strings.Contains(rows[2].Detail, "image keeper cannot start: sandboxImage: auto needs containerd's configuration") {
		t.Errorf("rows = %+v", rows)
	}
	if rows[1].Name != "containerd" || rows[1].Detail != "version unknown; configuration not read yet" {
		t.Errorf("containerd row = %+v", rows[1])
	}
	if !st.Ready() {
		t.Error("an informational row gated readiness")
	}
}

func TestDescribe(t *testing.T) {
	cfg := testConfig(t, "/run/x", func(c *config.Config) { c.Mode = config.ModeWarn })
	if got, want := Describe(cfg), "mode warn, preset none, checks [marker]"; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
}

// The external plugin applies its configuration when containerd first answers, keeps it over a
// reconnect to the same containerd (a warm snapshot), and re-reads containerd's configuration
// when a reconnect finds another containerd version.
func TestConnectedAppliesPerRuntime(t *testing.T) {
	ctx, _ := testContext(t)
	cfg := testConfig(t, filepath.Join(t.TempDir(), "ready"), nil)
	s := New("test", nil)
	defer s.Stop()
	v22 := Runtime{Name: "containerd", Version: "v2.2.9"}
	if err := s.Connected(ctx, cfg, v22); err != nil {
		t.Fatal(err)
	}
	first := s.gen.Load()
	if first == nil || first.runtime != v22 {
		t.Fatalf("first connection: generation %+v", first)
	}
	if err := s.Connected(ctx, cfg, v22); err != nil || s.gen.Load() != first {
		t.Errorf("reconnect to the same containerd replaced the generation (err %v)", err)
	}
	v23 := Runtime{Name: "containerd", Version: "v2.3.7"}
	if err := s.Connected(ctx, cfg, v23); err != nil {
		t.Fatal(err)
	}
	if g := s.gen.Load(); g == first || g.runtime != v23 || s.Status().Runtime != v23 {
		t.Errorf("an upgraded containerd kept the old generation")
	}
}

// A worker that panics is restarted with back-off and the panic logged with its stack; the
// process lives on.
func TestSuperviseRestartsAPanickingWorker(t *testing.T) {
	ctx, hook := testContext(t)
	ctx, cancel := context.WithCancel(ctx)
	g := &generation{}
	runs := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.supervise(ctx, "images", func(ctx context.Context) {
			runs++
			if runs < 3 {
				panic("boom")
			}
			cancel()
			<-ctx.Done()
		})
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("supervise did not return once its context ended")
	}
	if runs != 3 {
		t.Errorf("worker ran %d times, want 3 (two panics, then a normal run)", runs)
	}
	var logged int
	for _, e := range hook.AllEntries() {
		if e.Message == "worker panicked; restarting it" && e.Data["worker"] == "images" && strings.Contains(e.Data["stack"].(string), "supervise") {
			logged++
		}
	}
	if logged != 2 {
		t.Errorf("%d panics logged with their stack, want 2", logged)
	}
}

package supervisor

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/logging"
	"github.com/sandbox-guard/sandbox-guard/internal/standby"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

// newPreRegistered is what RunPreRegistered builds, without an NRI connection.
func newPreRegistered(t *testing.T) (*preRegistered, context.Context) {
	t.Helper()
	pr := &preRegistered{s: New("test", nil), version: "test", deferred: &logging.Deferred{}, log: logrus.New(), source: "10-sandbox-guard.conf",
		defaultStateDir: t.TempDir()}
	pr.log.SetOutput(pr.deferred)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		pr.releaseLock()
		cancel()
		pr.s.Stop()
		if pr.s.srv != nil {
			pr.s.srv.Wait()
		}
		pr.closeLog()
	})
	return pr, log.WithLogger(ctx, logrus.NewEntry(pr.log))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A configuration containerd hands over that does not parse turns the gate off, and the error,
// naming the key, goes to the log file the text names, even though the text is invalid.
func TestPreRegisteredBadConfigTurnsGateOffLoudly(t *testing.T) {
	pr, ctx := newPreRegistered(t)
	logFile := filepath.Join(t.TempDir(), "sg.log")
	pr.log.Info("logged before the configuration")
	pr.configure(ctx, "log: {file: "+logFile+"}\nmode: sometimes\n", Runtime{Name: "containerd", Version: "v2.2.9"})
	if pr.s.gen.Load() != nil {
		t.Error("an invalid configuration left the gate on")
	}
	if err := pr.s.Admit(ctx, podNet()); err != nil {
		t.Errorf("gate off: Admit = %v", err)
	}
	got := readFile(t, logFile)
	for _, want := range []string{"logged before the configuration", "invalid configuration: gate off", "mode", "10-sandbox-guard.conf"} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
}

// A valid configuration starts gating, logs to its file, and serves its metrics; a later valid
// one replaces it on the same metrics server.
func TestPreRegisteredConfigureAndReconfigure(t *testing.T) {
	pr, ctx := newPreRegistered(t)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "sg.log")
	marker := filepath.Join(dir, "ready")
	text := func(mode string) string {
		return "mode: " + mode + "\npreset: none\nsandboxImage: \"\"\nstateDir: " + dir + "\nlog: {file: " + logFile + "}\nmetrics: {address: \"127.0.0.1:0\"}\n" +
			"containerd: {configFile: " + filepath.Join(dir, "absent.toml") + "}\n" +
			"checks:\n- name: marker\n  file: {path: " + marker + "}\n"
	}
	pr.configure(ctx, text("enforce"), Runtime{Name: "containerd", Version: "v2.2.9"})
	if pr.s.gen.Load() == nil || pr.s.srv == nil {
		t.Fatal("a valid configuration did not start the workers and the metrics server")
	}
	waitFor(t, "a rejection once checked", func() bool { return pr.s.Admit(ctx, podNet()) != nil })
	scrape := func() string {
		resp, err := http.Get("http://" + pr.s.srv.Addr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for _, want := range []string{`sandbox_guard_check_ok{check="marker",kind="file"} 0`, `sandbox_guard_pods_total{verdict="reject"} `, `sandbox_guard_build_info{version="test"} 1`} {
		if out := scrape(); !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	srv := pr.s.srv
	pr.configure(ctx, text("warn"), Runtime{Name: "containerd", Version: "v2.2.9"})
	if err := pr.s.Admit(ctx, podNet()); err != nil {
		t.Errorf("warn mode after reconfiguration: Admit = %v", err)
	}
	if pr.s.srv != srv {
		t.Error("reconfiguration started a second metrics server")
	}
	waitFor(t, "warn-mode pods in the same metrics", func() bool {
		return strings.Contains(scrape(), `sandbox_guard_pods_total{verdict="would-reject"} 1`)
	})
	if got := readFile(t, logFile); !strings.Contains(got, "started by containerd v2.2.9: mode warn") {
		t.Errorf("log lacks the reconfiguration:\n%s", got)
	}
}

// containerd hands an empty configuration when the plugin's .conf file is missing: the defaults
// run in warn mode (like the shipped file), said loudly, never enforcing what nobody chose.
func TestPreRegisteredWithoutConfigWarns(t *testing.T) {
	pr, ctx := newPreRegistered(t)
	l, hook := testutil.CaptureLogger()
	pr.log = l
	ctx = log.WithLogger(ctx, logrus.NewEntry(l))
	pr.logFile = io.NopCloser(nil) // as if the log file were open: the default one is the node's
	pr.configure(ctx, "", Runtime{Name: "containerd", Version: "v2.2.9"})
	g := pr.s.gen.Load()
	if g == nil || g.cfg.Mode != config.ModeWarn {
		t.Fatalf("empty configuration: generation %+v, want the defaults in warn mode", g)
	}
	var warned bool
	for _, e := range hook.AllEntries() {
		warned = warned || (e.Level == logrus.WarnLevel && strings.Contains(e.Message, "no configuration from containerd"))
	}
	if !warned {
		t.Error("no warning that the configuration is missing")
	}
}

// held reports whether some open file holds the stand-by lock at path.
func held(t *testing.T, path string) bool {
	t.Helper()
	h, err := standby.Probe(path)
	if err != nil {
		t.Fatal(err)
	}
	return h.Held
}

func logged(hook *logtest.Hook, level logrus.Level, text string) bool {
	for _, e := range hook.AllEntries() {
		if e.Level == level && strings.Contains(e.Message, text) {
			return true
		}
	}
	return false
}

// The pre-registered plugin holds the stand-by lock in its stateDir from Configure on (so before
// containerd accepts external plugins), whatever its configuration says, until it releases it.
func TestPreRegisteredHoldsTheStandbyLock(t *testing.T) {
	for _, tc := range []struct {
		name string
		text func(stateDir string) string
	}{
		{"valid configuration", func(d string) string { return "mode: warn\npreset: none\nsandboxImage: \"\"\nstateDir: " + d + "\n" }},
		{"invalid configuration: gate off, lock in the stateDir it names", func(d string) string { return "mode: sometimes\nstateDir: " + d + "\n" }},
		{"no configuration: the default stateDir", func(string) string { return "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, ctx := newPreRegistered(t)
			l, hook := testutil.CaptureLogger()
			pr.log = l
			ctx = log.WithLogger(ctx, logrus.NewEntry(l))
			pr.logFile = io.NopCloser(nil) // as if the log file were open: the default one is the node's
			stateDir := filepath.Join(t.TempDir(), "state")
			text := tc.text(stateDir)
			if text == "" {
				stateDir = pr.defaultStateDir
			}
			lock := standby.Path(stateDir)
			pr.configure(ctx, text, Runtime{Name: "containerd", Version: "v2.2.9"})
			if !held(t, lock) {
				t.Fatalf("%s not held after Configure", lock)
			}
			if !logged(hook, logrus.InfoLevel, "holding the stand-by lock "+lock) {
				t.Error("no log line says the lock is held")
			}
			pr.configure(ctx, text, Runtime{Name: "containerd", Version: "v2.2.9"}) // again: still one lock
			pr.releaseLock()
			if held(t, lock) {
				t.Errorf("%s still held after releaseLock", lock)
			}
		})
	}
}

// A busy lock (the plugin of containerd's previous run still exiting) does not hold Configure
// up: it is taken as soon as it is free.
func TestPreRegisteredTakesABusyLockLater(t *testing.T) {
	pr, ctx := newPreRegistered(t)
	l, hook := testutil.CaptureLogger()
	pr.log = l
	ctx = log.WithLogger(ctx, logrus.NewEntry(l))
	stateDir := t.TempDir()
	previous, err := standby.Hold(standby.Path(stateDir))
	if err != nil {
		t.Fatal(err)
	}
	pr.configure(ctx, "mode: warn\npreset: none\nsandboxImage: \"\"\nstateDir: "+stateDir+"\n", Runtime{Name: "containerd", Version: "v2.2.9"})
	if !logged(hook, logrus.WarnLevel, "stand-by lock busy; retrying") {
		t.Error("no warning that the lock is busy")
	}
	if err := previous.Release(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the lock taken once free", func() bool {
		pr.mu.Lock()
		defer pr.mu.Unlock()
		return pr.lock != nil
	})
	if !held(t, standby.Path(stateDir)) {
		t.Error("not held")
	}
}

// A lock that cannot be taken at all (no state directory can be made) is said loudly, retried,
// and the retrying ends with the plugin.
func TestPreRegisteredCannotTakeTheLock(t *testing.T) {
	pr, ctx := newPreRegistered(t)
	l, hook := testutil.CaptureLogger()
	pr.log = l
	ctx = log.WithLogger(ctx, logrus.NewEntry(l))
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pr.configure(ctx, "mode: warn\npreset: none\nsandboxImage: \"\"\nstateDir: "+filepath.Join(file, "state")+"\n", Runtime{Name: "containerd", Version: "v2.2.9"})
	if !logged(hook, logrus.ErrorLevel, "cannot take the stand-by lock") {
		t.Error("no error that the lock cannot be taken")
	}
	if pr.s.gen.Load() == nil {
		t.Error("the gate is off because of the lock")
	}
	pr.releaseLock() // stops retrying (goleak checks nothing is left)
}

// What the external plugin logs and /readyz shows, for each state of the lock.
func TestExternalStandBy(t *testing.T) {
	path := standby.Path(t.TempDir())
	ctx := testutil.Context(testutil.QuietLogger())
	f, recheck := External{StandbyLock: path}.standBy(ctx)
	if recheck != 100*time.Millisecond {
		t.Errorf("lock probed every %v, want 100ms", recheck)
	}
	if yes, why := f(); yes || why != "no pre-registered sandbox-guard holds "+path {
		t.Errorf("no file: %v %q", yes, why)
	}
	l, err := standby.Hold(path)
	if err != nil {
		t.Fatal(err)
	}
	if yes, why := f(); !yes || why != fmt.Sprintf("pre-registered sandbox-guard holds %s (pid %d); containerd runs it", path, os.Getpid()) {
		t.Errorf("held: %v %q", yes, why)
	}
	_ = l.Release()
	if yes, why := f(); yes || why != "no pre-registered sandbox-guard holds "+path {
		t.Errorf("released, the file left behind: %v %q", yes, why)
	}
	if err := os.Chmod(filepath.Dir(path), 0o000); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.Chmod(filepath.Dir(path), 0o700) }()
	if os.Geteuid() != 0 { // root reads it anyway
		if yes, why := f(); yes || !strings.Contains(why, "cannot tell whether") || !strings.HasSuffix(why, "; gating") {
			t.Errorf("unreadable: %v %q", yes, why)
		}
	}

	// The deprecated flag: the file's existence, whatever runs it.
	l2, hook := testutil.CaptureLogger()
	bin := filepath.Join(t.TempDir(), "10-sandbox-guard")
	f, recheck = External{YieldTo: bin}.standBy(testutil.Context(l2))
	if !logged(hook, logrus.WarnLevel, "--yield-to-preregistered is deprecated") || recheck != 10*time.Second {
		t.Errorf("deprecated flag: no warning, or rechecked every %v", recheck)
	}
	if yes, _ := f(); yes {
		t.Error("no file, standing by")
	}
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if yes, _ := f(); !yes {
		t.Error("file there, not standing by")
	}
	if f, _ := (External{}).standBy(ctx); f != nil {
		t.Error("stands by without being told to")
	}
}

// Two sandbox-guards on one node (the pre-registered plugin and the DaemonSet's) share the
// loopback metrics address: the one that finds it taken starts its server once it is free, so
// the DaemonSet's probes find whichever plugin outlives the other.
func TestMetricsServerStartsOnceTheAddressIsFree(t *testing.T) {
	pr, ctx := newPreRegistered(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := taken.Addr().String()
	pr.configure(ctx, "mode: warn\npreset: none\nsandboxImage: \"\"\nstateDir: "+t.TempDir()+"\nmetrics: {address: \""+addr+"\"}\n",
		Runtime{Name: "containerd", Version: "v2.2.9"})
	server := func() bool {
		pr.s.mu.Lock()
		defer pr.s.mu.Unlock()
		return pr.s.srv != nil
	}
	if server() {
		t.Fatal("a server started on a taken address")
	}
	_ = taken.Close()
	testutil.WaitFor(t, "the metrics server once the address is free", server)
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz = %d", resp.StatusCode)
	}
}

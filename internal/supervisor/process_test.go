package supervisor

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/logging"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

// newPreRegistered is what RunPreRegistered builds, without an NRI connection.
func newPreRegistered(t *testing.T) (*preRegistered, context.Context) {
	t.Helper()
	pr := &preRegistered{s: New("test", nil), version: "test", deferred: &logging.Deferred{}, log: logrus.New(), source: "10-sandbox-guard.conf"}
	pr.log.SetOutput(pr.deferred)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
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
		return "mode: " + mode + "\npreset: none\nsandboxImage: \"\"\nlog: {file: " + logFile + "}\nmetrics: {address: \"127.0.0.1:0\"}\n" +
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

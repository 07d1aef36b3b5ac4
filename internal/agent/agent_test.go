package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/gate"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const hint = "the network agent writes it when ready"

// newAgent builds an agent whose only check is that marker exists.
func newAgent(t *testing.T, marker string, mutate func(*config.Config)) (*Agent, *logtest.Hook) {
	t.Helper()
	doc := "preset: none\nsandboxImage: \"\"\nrefresh: {interval: 10m, maxBackoff: 10m, timeout: 1s}\nchecks:\n- name: marker\n  hint: " + hint + "\n  file: {path: " + marker + "}\n"
	cfg, err := config.Parse([]byte(doc), "test")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	log, hook := testutil.CaptureLogger()
	a, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a, hook
}

func podNet() gate.Pod {
	return gate.Pod{Namespace: "default", Name: "web", UID: "u1", Labels: map[string]string{"app": "web"}}
}

func TestAdmit(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "ready")
	present := filepath.Join(dir, "present")
	if err := os.WriteFile(present, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	failingText := "sandbox-guard: pod default/web not started: node network not ready: marker: " + missing +
		" does not exist (" + hint + "); kubelet will retry"

	tests := []struct {
		name    string
		marker  string
		cfg     func(*config.Config)
		pod     gate.Pod
		checked bool   // run the checks before asking
		wantErr string // exact error text; empty: admitted
		logged  string // a substring of the warning logged; empty: none
	}{
		{name: "failing check rejects", marker: missing, pod: podNet(), checked: true, wantErr: failingText, logged: failingText},
		{name: "passing check admits", marker: present, pod: podNet(), checked: true},
		{name: "warn mode admits", marker: missing, cfg: func(c *config.Config) { c.Mode = config.ModeWarn }, pod: podNet(), checked: true,
			logged: "warn mode, admitted; enforce would reject: " + failingText},
		{name: "off mode admits", marker: missing, cfg: func(c *config.Config) { c.Mode = config.ModeOff }, pod: podNet(), checked: true},
		{name: "host network admits", marker: missing, pod: gate.Pod{Namespace: "kube-system", Name: "aws-node-x", HostNetwork: true}, checked: true},
		{name: "exempt namespace admits", marker: missing, cfg: func(c *config.Config) { c.Exempt.Namespaces = []string{"default"} }, pod: podNet(), checked: true},
		{name: "exempt label admits", marker: missing, cfg: func(c *config.Config) {
			c.Exempt.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
		}, pod: podNet(), checked: true},
		{name: "before the first check", marker: present, pod: podNet(), checked: false,
			wantErr: "sandbox-guard: pod default/web not started: node readiness not checked yet (sandbox-guard is starting); kubelet will retry"},
		{name: "host network before the first check", marker: present, pod: gate.Pod{Namespace: "a", Name: "b", HostNetwork: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, hook := newAgent(t, tt.marker, tt.cfg)
			if tt.checked {
				a.CheckNow(context.Background())
			}
			hook.Reset()
			err := a.Admit(context.Background(), tt.pod)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Admit = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Errorf("Admit = %v\nwant %s", err, tt.wantErr)
			}
			var warnings []string
			for _, e := range hook.AllEntries() {
				if e.Level == logrus.WarnLevel {
					warnings = append(warnings, e.Message)
					if e.Data["pod"] != tt.pod.String() {
						t.Errorf("log entry %q has pod %v", e.Message, e.Data["pod"])
					}
				}
			}
			if tt.logged == "" && len(warnings) > 0 && err == nil {
				t.Errorf("admitted pod logged warnings %q", warnings)
			}
			if tt.logged != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], tt.logged)) {
				t.Errorf("warnings %q, want one containing %q", warnings, tt.logged)
			}
		})
	}
}

func TestAdmitSettleTime(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ready")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a, _ := newAgent(t, marker, func(c *config.Config) { c.SettleTime = config.Duration{Duration: time.Minute} })
	s := a.CheckNow(context.Background())
	if !s.Ready() {
		t.Fatalf("snapshot not ready: %+v", s)
	}
	a.now = func() time.Time { return s.ReadySince.Add(10 * time.Second) }
	err := a.Admit(context.Background(), podNet())
	if err == nil || !strings.Contains(err.Error(), "of the 1m0s settle time") {
		t.Errorf("Admit 10s after ready with a 1m settle time = %v, want a settle rejection", err)
	}
	a.now = func() time.Time { return s.ReadySince.Add(61 * time.Second) }
	if err := a.Admit(context.Background(), podNet()); err != nil {
		t.Errorf("Admit after settling = %v", err)
	}
}

// A rejection (or a warn-mode would-reject) kicks a refresh, so that a condition that has just
// cleared is seen long before the next interval (10 minutes here).
func TestAdmitKicksRefresh(t *testing.T) {
	for _, mode := range []config.Mode{config.ModeEnforce, config.ModeWarn} {
		t.Run(string(mode), func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "ready")
			a, _ := newAgent(t, marker, func(c *config.Config) { c.Mode = mode })
			a.Start(context.Background())
			defer a.Stop()
			testutil.WaitFor(t, "the first refresh", func() bool { return a.store.Load() != nil })
			first := a.store.Load()
			if first.Ready() {
				t.Fatal("ready without the marker")
			}
			if err := os.WriteFile(marker, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, "a refresh that sees the marker", func() bool {
				err := a.Admit(context.Background(), podNet())
				if mode == config.ModeWarn && err != nil {
					t.Fatalf("warn mode rejected: %v", err)
				}
				s := a.store.Load()
				return s != first && s.Ready()
			})
			if err := a.Admit(context.Background(), podNet()); err != nil {
				t.Errorf("Admit once ready = %v", err)
			}
		})
	}
}

// Admitted pods do not kick: with the gate open, nothing refreshes before the interval.
func TestAdmitDoesNotKickWhenAdmitted(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ready")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a, _ := newAgent(t, marker, nil)
	checked := a.CheckNow(context.Background())
	for i := 0; i < 10; i++ {
		if err := a.Admit(context.Background(), podNet()); err != nil {
			t.Fatal(err)
		}
	}
	// Start consumes a pending kick right after its first refresh; with none pending, only one
	// refresh happens. The marker is removed after that refresh, so a second refresh would
	// publish a snapshot that is not ready.
	a.Start(context.Background())
	defer a.Stop()
	testutil.WaitFor(t, "the first refresh", func() bool { return a.store.Load() != checked })
	before := a.store.Load()
	if !before.Ready() {
		t.Fatalf("first refresh not ready: %+v", before)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	a.Stop()
	if a.store.Load() != before {
		t.Error("an admitted pod triggered a refresh")
	}
}

func TestStartStop(t *testing.T) {
	a, _ := newAgent(t, "/nonexistent/marker", nil)
	a.Stop() // before Start: nothing to stop
	ctx, cancel := context.WithCancel(context.Background())
	a.Start(ctx)
	testutil.WaitFor(t, "the first refresh", func() bool { return a.store.Load() != nil })
	cancel() // the parent context ends the workers too
	done := make(chan struct{})
	go func() { a.Stop(); a.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return")
	}
}

func TestCheckNow(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ready")
	a, _ := newAgent(t, marker, nil)
	s := a.CheckNow(context.Background())
	if s.Ready() || len(s.Results) != 1 || s.Results[0].Name != "marker" || s.Results[0].Kind != "file" || s.Results[0].Hint != hint {
		t.Errorf("CheckNow = %+v", s)
	}
	if a.store.Load() != s {
		t.Error("CheckNow did not publish its snapshot for Admit")
	}
}

func TestDescribe(t *testing.T) {
	a, _ := newAgent(t, "/run/x", func(c *config.Config) { c.Mode = config.ModeWarn })
	if got, want := a.Describe(), "mode warn, preset none, checks [marker]"; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
}

func TestNewRejectsBadSelector(t *testing.T) {
	cfg := config.Default()
	cfg.Preset = config.PresetNone
	cfg.Exempt.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Like"}}}
	if _, err := New(cfg, logrus.New()); err == nil {
		t.Error("New accepted an invalid podSelector")
	}
}

package hook

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/gate"
	"github.com/sandbox-guard/sandbox-guard/internal/logging"
	"github.com/sandbox-guard/sandbox-guard/internal/snapshot"
)

const (
	hint   = "the network agent writes it when ready"
	detail = "/run/ready does not exist"
)

var now = time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC)

func podNet() gate.Pod {
	return gate.Pod{Namespace: "default", Name: "web", UID: "u1", Labels: map[string]string{"app": "web"}}
}

func snap(ok bool) *snapshot.Snapshot {
	s := &snapshot.Snapshot{Taken: now, Results: []snapshot.Result{{Name: "marker", Kind: "file", OK: ok, Detail: detail, Hint: hint}}}
	if ok {
		s.ReadySince = now.Add(-time.Hour)
	}
	return s
}

type observed struct {
	verdict string
	failing []string
}

type recorder struct {
	seen   []observed
	panics []string
}

func (r *recorder) ObservePanic(where string) { r.panics = append(r.panics, where) }

func (r *recorder) ObservePod(verdict string, failing []string, took time.Duration) {
	if took < 0 {
		panic("negative duration")
	}
	r.seen = append(r.seen, observed{verdict, failing})
}

// newHook returns a hook over s with cfg changed by mutate, its log and its kick counter.
func newHook(t *testing.T, s *snapshot.Snapshot, mutate func(*config.Config)) (*Hook, *logtest.Hook, *atomic.Int64, *recorder) {
	t.Helper()
	cfg := config.Default()
	cfg.Preset = config.PresetNone
	if mutate != nil {
		mutate(cfg)
	}
	policy, err := gate.NewPolicy(cfg)
	if err != nil {
		t.Fatalf("NewPolicy: %v", err)
	}
	var store snapshot.Store
	if s != nil {
		store.Publish(s)
	}
	log, lh := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	var kicks atomic.Int64
	rec := &recorder{}
	h := New(policy, &store, func() { kicks.Add(1) }, rec, logrus.NewEntry(log))
	h.now = func() time.Time { return now }
	return h, lh, &kicks, rec
}

func TestAdmit(t *testing.T) {
	failingText := "sandbox-guard: pod default/web not started: node network not ready: marker: " + detail +
		" (" + hint + "); kubelet will retry"
	tests := []struct {
		name    string
		snap    *snapshot.Snapshot
		cfg     func(*config.Config)
		pod     gate.Pod
		wantErr string // exact error text; empty: admitted
		logged  string // a substring of the one warning logged; empty: none
		kicked  bool
		verdict string
	}{
		{name: "failing check rejects", snap: snap(false), pod: podNet(), wantErr: failingText, logged: failingText, kicked: true, verdict: "reject"},
		{name: "passing check admits", snap: snap(true), pod: podNet(), verdict: "admit"},
		{name: "warn mode admits", snap: snap(false), cfg: func(c *config.Config) { c.Mode = config.ModeWarn }, pod: podNet(),
			logged: "warn mode, admitted; enforce would reject: " + failingText, kicked: true, verdict: "would-reject"},
		{name: "off mode admits", snap: snap(false), cfg: func(c *config.Config) { c.Mode = config.ModeOff }, pod: podNet(), verdict: "admit"},
		{name: "host network admits", snap: snap(false), pod: gate.Pod{Namespace: "kube-system", Name: "aws-node-x", HostNetwork: true}, verdict: "admit"},
		{name: "exempt namespace admits", snap: snap(false), cfg: func(c *config.Config) { c.Exempt.Namespaces = []string{"default"} }, pod: podNet(), verdict: "admit"},
		{name: "exempt label admits", snap: snap(false), cfg: func(c *config.Config) {
			c.Exempt.PodSelector = &config.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
		}, pod: podNet(), verdict: "admit"},
		{name: "before the first check", pod: podNet(), kicked: true, verdict: "reject",
			wantErr: "sandbox-guard: pod default/web not started: node network is not ready: not checked yet (sandbox-guard is starting); kubelet will retry",
			logged:  "not checked yet (sandbox-guard is starting)"},
		{name: "host network before the first check", pod: gate.Pod{Namespace: "a", Name: "b", HostNetwork: true}, verdict: "admit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, lh, kicks, rec := newHook(t, tt.snap, tt.cfg)
			err := h.Admit(context.Background(), tt.pod)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Admit = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Errorf("Admit = %v\nwant %s", err, tt.wantErr)
			}
			var warnings []string
			for _, e := range lh.AllEntries() {
				if e.Level == logrus.WarnLevel {
					warnings = append(warnings, e.Message)
					if e.Data["pod"] != tt.pod.String() {
						t.Errorf("log entry %q has pod %v", e.Message, e.Data["pod"])
					}
				}
			}
			if tt.logged == "" && len(warnings) > 0 {
				t.Errorf("logged warnings %q, want none", warnings)
			}
			if tt.logged != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], tt.logged)) {
				t.Errorf("warnings %q, want one containing %q", warnings, tt.logged)
			}
			if got := kicks.Load() == 1; got != tt.kicked {
				t.Errorf("kicked %d times, want kicked=%v", kicks.Load(), tt.kicked)
			}
			if len(rec.seen) != 1 || rec.seen[0].verdict != tt.verdict {
				t.Errorf("observed %+v, want one %s", rec.seen, tt.verdict)
			}
		})
	}
}

func TestAdmitObservesFailingChecks(t *testing.T) {
	h, _, _, rec := newHook(t, snap(false), nil)
	_ = h.Admit(context.Background(), podNet())
	if len(rec.seen) != 1 || strings.Join(rec.seen[0].failing, ",") != "marker" {
		t.Errorf("observed %+v, want the failing check marker", rec.seen)
	}
}

func TestAdmitSettleTime(t *testing.T) {
	s := snap(true)
	s.ReadySince = now
	h, _, _, _ := newHook(t, s, func(c *config.Config) { c.SettleTime = config.Duration{Duration: time.Minute} })
	h.now = func() time.Time { return now.Add(10 * time.Second) }
	err := h.Admit(context.Background(), podNet())
	if err == nil || !strings.Contains(err.Error(), "of the 1m0s settle time") {
		t.Errorf("Admit 10s after ready with a 1m settle time = %v, want a settle rejection", err)
	}
	h.now = func() time.Time { return now.Add(61 * time.Second) }
	if err := h.Admit(context.Background(), podNet()); err != nil {
		t.Errorf("Admit after settling = %v", err)
	}
}

// An admitted pod builds no log entry unless debug lines are read.
func TestAdmitLogsAdmittedOnlyAtDebug(t *testing.T) {
	for _, level := range []logrus.Level{logrus.InfoLevel, logrus.DebugLevel} {
		h, lh, _, _ := newHook(t, snap(true), nil)
		h.log.Logger.SetLevel(level)
		if err := h.Admit(context.Background(), podNet()); err != nil {
			t.Fatal(err)
		}
		if got, want := len(lh.AllEntries()), map[logrus.Level]int{logrus.InfoLevel: 0, logrus.DebugLevel: 1}[level]; got != want {
			t.Errorf("level %s: %d entries, want %d", level, got, want)
		}
	}
}

func TestNilKickAndObserver(t *testing.T) {
	policy, err := gate.NewPolicy(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	var store snapshot.Store
	log, _ := logtest.NewNullLogger()
	h := New(policy, &store, nil, nil, logrus.NewEntry(log))
	if err := h.Admit(context.Background(), podNet()); err == nil {
		t.Error("admitted before the first check")
	}
}

// blocked never returns from Write: a full stderr pipe, a hung /var/log.
type blocked struct{ release chan struct{} }

func (b blocked) Write(p []byte) (int, error) {
	<-b.release
	return len(p), nil
}

// The hook runs under NRI's node-wide lock: with its log output stalled for good, rejections
// still return (the lines are dropped and counted by logging.Async, as the plugin wires it).
func TestAdmitNeverWaitsForAStalledLog(t *testing.T) {
	h, _, _, _ := newHook(t, snap(false), nil)
	w := blocked{release: make(chan struct{})}
	out := logging.NewAsync(w, 8)
	h.log.Logger.SetOutput(out)
	h.log.Logger.ReplaceHooks(logrus.LevelHooks{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 500 {
			_ = h.Admit(context.Background(), podNet())
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Admit blocked on a stalled log output")
	}
	if out.Dropped() == 0 {
		t.Error("no line dropped although the output never took one")
	}
	close(w.release)
	out.Close(10 * time.Second)
}

// A decision that panics never takes the process down (containerd would not restart it and
// every pod would pass): enforce refuses the pod, warn admits it, the stack is logged, the panic
// counted.
func TestAdmitRecoversFromAPanic(t *testing.T) {
	for _, mode := range []config.Mode{config.ModeEnforce, config.ModeWarn} {
		t.Run(string(mode), func(t *testing.T) {
			h, lh, _, rec := newHook(t, snap(true), func(c *config.Config) { c.Mode = mode })
			h.now = func() time.Time { panic("boom") }
			err := h.Admit(context.Background(), podNet())
			want := "sandbox-guard: pod default/web not started: sandbox-guard could not decide (internal error, see its log); kubelet will retry"
			switch {
			case mode == config.ModeEnforce && (err == nil || err.Error() != want):
				t.Errorf("enforce: Admit = %v, want %q", err, want)
			case mode == config.ModeWarn && err != nil:
				t.Errorf("warn: Admit = %v, want admitted", err)
			}
			var logged bool
			for _, e := range lh.AllEntries() {
				stack, _ := e.Data["stack"].(string)
				logged = logged || (e.Level == logrus.ErrorLevel && e.Data["panic"] == "boom" && strings.Contains(stack, "hook.(*Hook).Admit"))
			}
			if !logged || len(rec.panics) != 1 || rec.panics[0] != "hook" {
				t.Errorf("logged with stack %v, panics observed %v", logged, rec.panics)
			}
		})
	}
}

package keeper_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/backoff"
	"github.com/sandbox-guard/sandbox-guard/internal/containerd"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper/keepertest"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

const markerName = "example.test/marker:1"

// running is a Keeper.Run in the background.
type running struct {
	k      *keeper.Keeper
	cancel context.CancelFunc
	done   chan struct{}
}

// startRun runs k until the test ends (or stop is called).
func startRun(t *testing.T, k *keeper.Keeper) *running {
	t.Helper()
	return startRunLogging(t, k, testutil.QuietLogger())
}

// startRunLogging is startRun with log as the keeper's logger.
func startRunLogging(t *testing.T, k *keeper.Keeper, log *logrus.Logger) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(testutil.Context(log))
	r := &running{k: k, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		k.Run(ctx)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// runTargets are the sandbox image and a marker image whose ensure shows how far Run got.
func runTargets() []keeper.Target {
	return []keeper.Target{sandboxTarget(), {Name: markerName, Role: "pinned image", Sources: []string{markerName}}}
}

// runFake serves both targets; nothing is present yet.
func runFake() *keepertest.Fake {
	f := keepertest.NewFake()
	f.Serve(testName, "sandbox")
	f.Serve(markerName, "marker")
	return f
}

// waitPresent waits until every target has been ensured successfully.
func waitPresent(t *testing.T, k *keeper.Keeper) {
	t.Helper()
	testutil.WaitFor(t, "every target present", func() bool {
		for _, st := range k.Status() {
			if !st.Present {
				return false
			}
		}
		return true
	})
}

// syncRun sends a deletion of the marker image (its record stays, so the ensure changes nothing)
// and waits for the marker's ensure. Run ensures one target at a time in the order they were
// queued, so once the marker's ensure has started, every ensure queued by earlier events has
// finished.
func syncRun(t *testing.T, f *keepertest.Fake, s *keepertest.Stream) {
	t.Helper()
	before := f.Count("Get", markerName)
	s.Send(t, containerd.Event{Kind: containerd.Deleted, Name: markerName})
	testutil.WaitFor(t, "the marker's ensure", func() bool { return f.Count("Get", markerName) > before })
}

func TestRunEvents(t *testing.T) {
	desc, cfg := keepertest.Image("sandbox")
	digestRef := testRepo + "@" + desc.Digest.String()
	tests := []struct {
		name       string
		change     func(f *keepertest.Fake) // what happened in containerd
		event      containerd.Event
		wantEnsure bool
		check      func(t *testing.T, f *keepertest.Fake)
	}{
		{
			name:       "name deleted",
			change:     func(f *keepertest.Fake) { f.Remove(testName, true) },
			event:      containerd.Event{Kind: containerd.Deleted, Name: testName},
			wantEnsure: true,
			check: func(t *testing.T, f *keepertest.Fake) {
				if n := f.Count("Pull", testName); n != 1 {
					t.Errorf("%d pulls after the deletion, want 1", n)
				}
				if r, ok := f.Record(testName); !ok || !reflect.DeepEqual(r.Labels, pinned()) {
					t.Errorf("record %+v %v", r, ok)
				}
			},
		},
		{
			name:       "image ID record deleted",
			change:     func(f *keepertest.Fake) { f.Remove(cfg, false) },
			event:      containerd.Event{Kind: containerd.Deleted, Name: cfg},
			wantEnsure: true,
			check: func(t *testing.T, f *keepertest.Fake) {
				if n := f.Count("Pull", ""); n != 0 {
					t.Errorf("%d pulls", n)
				}
				if r, ok := f.Record(cfg); !ok || r.Target.Digest != desc.Digest || !reflect.DeepEqual(r.Labels, pinned()) {
					t.Errorf("image ID record not recreated: %+v %v", r, ok)
				}
			},
		},
		{
			name:       "digest reference deleted",
			change:     func(f *keepertest.Fake) { f.Remove(digestRef, false) },
			event:      containerd.Event{Kind: containerd.Deleted, Name: digestRef},
			wantEnsure: true,
			check: func(t *testing.T, f *keepertest.Fake) {
				if _, ok := f.Record(digestRef); !ok {
					t.Errorf("%s not recreated", digestRef)
				}
			},
		},
		{
			name: "updated without the pinned label",
			change: func(f *keepertest.Fake) {
				f.SetRecord(testName, desc, map[string]string{keeper.LabelManaged: "managed"})
			},
			event:      containerd.Event{Kind: containerd.Updated, Name: testName, Labels: map[string]string{keeper.LabelManaged: "managed"}},
			wantEnsure: true,
			check: func(t *testing.T, f *keepertest.Fake) {
				sl := f.CallsOf("SetLabels")
				if len(sl) != 1 || sl[0].Name != testName || !reflect.DeepEqual(sl[0].Labels, pinned()) {
					t.Errorf("SetLabels calls %+v, want one re-pin", sl)
				}
				if n := f.Count("Pull", ""); n != 0 {
					t.Errorf("%d pulls for a re-pin", n)
				}
			},
		},
		{
			name:       "created without the pinned label",
			change:     func(f *keepertest.Fake) { f.SetRecord(testName, desc, nil) },
			event:      containerd.Event{Kind: containerd.Created, Name: testName},
			wantEnsure: true,
			check: func(t *testing.T, f *keepertest.Fake) {
				if n := f.Count("SetLabels", testName); n != 1 {
					t.Errorf("%d SetLabels, want 1", n)
				}
			},
		},
		{
			name:  "updated with the pinned label",
			event: containerd.Event{Kind: containerd.Updated, Name: testName, Labels: with(pinned(), "team", "infra")},
		},
		{
			name:  "created with the pinned label",
			event: containerd.Event{Kind: containerd.Created, Name: testName, Labels: pinned()},
		},
		{
			name:  "unrelated image deleted",
			event: containerd.Event{Kind: containerd.Deleted, Name: "docker.io/library/nginx:latest"},
		},
		{
			name:  "unrelated image updated without a pin",
			event: containerd.Event{Kind: containerd.Updated, Name: "docker.io/library/nginx:latest", Labels: map[string]string{}},
		},
		{
			name:  "other tag of the same repository deleted",
			event: containerd.Event{Kind: containerd.Deleted, Name: testRepo + ":3.9"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := runFake()
			k, _ := newKeeper(f, keeper.Options{Targets: runTargets(), Reconcile: time.Hour})
			startRun(t, k)
			waitPresent(t, k)
			s := f.Stream(t, 1)
			syncRun(t, f, s) // the initial ensures are over
			before := f.Count("Get", testName)
			f.ResetCalls()

			if tt.change != nil {
				tt.change(f)
			}
			s.Send(t, tt.event)
			syncRun(t, f, s)

			ensures := f.Count("Get", testName)
			if tt.wantEnsure && ensures != 1 || !tt.wantEnsure && ensures != 0 {
				t.Errorf("%d ensures of %s after the event (%d before), want ensure %v", ensures, testName, before, tt.wantEnsure)
			}
			if !tt.wantEnsure {
				if m := mutations(f); len(m) != 0 {
					t.Errorf("changes after an event that needs none: %+v", m)
				}
			}
			if tt.check != nil {
				tt.check(t, f)
			}
			if st := k.Status()[0]; !st.Present || !st.Pinned {
				t.Errorf("status %+v", st)
			}
		})
	}
}

func TestRunResubscribesAfterBreak(t *testing.T) {
	f := runFake()
	log, hook := testutil.CaptureLogger()
	k, _ := newKeeper(f, keeper.Options{Targets: runTargets(), Reconcile: time.Hour})
	startRunLogging(t, k, log)
	waitPresent(t, k)
	s := f.Stream(t, 1)
	syncRun(t, f, s)

	for n := 2; n <= 3; n++ {
		gets := map[string]int{testName: f.Count("Get", testName), markerName: f.Count("Get", markerName)}
		s.Stop(errors.New("containerd image events: rpc error: code = Unavailable desc = error reading from server: EOF"))
		s = f.Stream(t, n)
		// Events during the break are lost: everything is looked at again.
		for name, c := range gets {
			testutil.WaitFor(t, "re-ensure of "+name+" after resubscribing", func() bool { return f.Count("Get", name) > c })
		}
		if got := f.Count("Subscribe", ""); got != n {
			t.Errorf("%d subscriptions, want %d", got, n)
		}
		// The new stream is followed.
		f.Remove(testName, true)
		pulls := f.Count("Pull", testName)
		s.Send(t, containerd.Event{Kind: containerd.Deleted, Name: testName})
		testutil.WaitFor(t, "repair after a deletion on the new stream", func() bool { return f.Count("Pull", testName) > pulls })
	}
	waitPresent(t, k)
	var warned bool
	for _, l := range logLines(hook) {
		if strings.Contains(l, "image event stream broken") && strings.Contains(l, "Unavailable") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning about the broken stream: %v", logLines(hook))
	}
}

func TestRunRetriesWithBackoff(t *testing.T) {
	f := runFake()
	f.FailPull(testName, errors.New("dial tcp: i/o timeout"))
	log, hook := testutil.CaptureLogger()
	k, _ := newKeeper(f, keeper.Options{
		Targets:   runTargets(),
		Reconcile: time.Hour,
		Retry:     backoff.Policy{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond, Factor: 2},
	})
	startRunLogging(t, k, log)
	testutil.WaitFor(t, "the first pull", func() bool { return f.Count("Pull", testName) > 0 })
	const window = 600 * time.Millisecond
	time.Sleep(window)
	// Retries at about 0, 20, 60, 110, 160 ... 560ms: 13. A hot loop would make thousands.
	n := f.Count("Pull", testName)
	if n < 4 || n > 20 {
		t.Errorf("%d pulls of a failing image in %v, want about 13", n, window)
	}
	if st := k.Status()[0]; st.Present || !strings.Contains(st.LastError, "i/o timeout") {
		t.Errorf("status %+v", st)
	}
	var logged bool
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "i/o timeout") && e.Data["retry_in"] != nil {
			logged = true
		}
	}
	if !logged {
		t.Error("failure not logged with retry_in")
	}

	// The source comes back: the image is pulled, and the retries stop.
	f.FailPull(testName, nil)
	waitPresent(t, k)
	settled := f.Count("Pull", testName)
	time.Sleep(200 * time.Millisecond)
	if n := f.Count("Pull", testName); n != settled {
		t.Errorf("%d pulls after the image became present", n-settled)
	}
}

// Every ensure that fails schedules a retry of its own, including ensures started by the
// reconcile ticker or an event while a retry is already scheduled. The retries must not
// multiply: a target that keeps failing is tried about once per back-off interval (plus once
// per reconcile tick), however long it has been failing.
func TestRunRetriesDoNotMultiply(t *testing.T) {
	f := runFake()
	f.FailPull(testName, errors.New("dial tcp: i/o timeout"))
	k, _ := newKeeper(f, keeper.Options{
		Targets:   runTargets(),
		Reconcile: 50 * time.Millisecond,
		Retry:     backoff.Policy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Factor: 2, Jitter: 0.2},
	})
	r := startRun(t, k)
	testutil.WaitFor(t, "the first pull", func() bool { return f.Count("Pull", testName) > 0 })
	time.Sleep(500 * time.Millisecond)
	start := f.Count("Pull", testName)
	const window = time.Second
	time.Sleep(window)
	n := f.Count("Pull", testName) - start
	r.stop(t)
	// One retry chain (every 40-60ms) and the reconcile ticks (every 50ms): at most about 45
	// attempts a second.
	if n > 60 {
		t.Fatalf("regression: run.go:40-46 (Run) schedules a new time.AfterFunc retry after every failed ensure, also after "+
			"ensures started by the reconcile ticker or events while a retry is already pending, so retry chains "+
			"accumulate (one more per reconcile tick): %d pulls in %v after 0.5s of failing (want <= 60)", n, window)
	}
}

func TestRunReconciles(t *testing.T) {
	f := runFake()
	k, _ := newKeeper(f, keeper.Options{Targets: runTargets(), Reconcile: 20 * time.Millisecond})
	startRun(t, k)
	waitPresent(t, k)
	// The image goes without any event (an event lost, say): the reconcile finds it.
	f.Remove(testName, true)
	testutil.WaitFor(t, "a reconcile pull", func() bool { return f.Count("Pull", testName) >= 2 })
	waitPresent(t, k)
	gets := f.Count("Get", markerName)
	testutil.WaitFor(t, "more reconciles", func() bool { return f.Count("Get", markerName) >= gets+3 })
}

func TestRunStopsWithContext(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := runFake()
	f.FailPull(markerName, errors.New("403 Forbidden")) // a retry is pending when Run stops
	k, _ := newKeeper(f, keeper.Options{Targets: runTargets(), Reconcile: time.Hour,
		Retry: backoff.Policy{Initial: 30 * time.Millisecond, Max: 30 * time.Millisecond}})
	r := startRun(t, k)
	testutil.WaitFor(t, "the sandbox image", func() bool { return k.Status()[0].Present })
	f.Stream(t, 1)
	r.stop(t)
	// Nothing runs after Run returned: no ensure, no resubscription.
	time.Sleep(100 * time.Millisecond)
	calls := len(f.CallsOf("Get")) + f.Count("Subscribe", "")
	time.Sleep(100 * time.Millisecond)
	if got := len(f.CallsOf("Get")) + f.Count("Subscribe", ""); got != calls {
		t.Errorf("%d calls after Run returned", got-calls)
	}
}

func TestRunWithoutTargetsReturns(t *testing.T) {
	f := keepertest.NewFake()
	k, _ := newKeeper(f, keeper.Options{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.Run(context.Background())
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run without targets did not return")
	}
	if n := f.Count("Subscribe", ""); n != 0 {
		t.Errorf("%d subscriptions without targets", n)
	}
}

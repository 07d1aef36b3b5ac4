package checks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sandbox-guard/sandbox-guard/internal/snapshot"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is a goroutine-safe clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// switchProber answers what it is told to.
type switchProber struct{ ok atomic.Bool }

func (p *switchProber) Probe(context.Context) Outcome { return Outcome{OK: p.ok.Load()} }

// countingProber counts its calls.
type countingProber struct{ n atomic.Int64 }

func (p *countingProber) Probe(context.Context) Outcome {
	p.n.Add(1)
	return Outcome{OK: true}
}

func TestRefreshPublishesInConfigurationOrder(t *testing.T) {
	// Probe i finishes only after probe i+1 has: completion order is the reverse of the
	// configuration order. A runner that probed one at a time would time every probe but the
	// last one out.
	const n = 6
	done := make([]chan struct{}, n+1)
	for i := range done {
		done[i] = make(chan struct{})
	}
	close(done[n])
	var list []Check
	for i := 0; i < n; i++ {
		list = append(list, Check{
			Name: fmt.Sprintf("check-%d", i), Kind: "kind", Hint: fmt.Sprintf("hint %d", i),
			Prober: ProberFunc(func(ctx context.Context) Outcome {
				defer close(done[i])
				select {
				case <-done[i+1]:
					return Outcome{OK: i%2 == 0, Detail: fmt.Sprintf("detail %d", i)}
				case <-ctx.Done():
					return Outcome{Detail: "timed out"}
				}
			}),
		})
	}
	clock := newClock()
	var store snapshot.Store
	var heard []*snapshot.Snapshot
	r := NewRunner(list, &store, Options{Timeout: 5 * time.Second, Now: clock.Now,
		OnRefresh: func(s *snapshot.Snapshot) { heard = append(heard, s) }})

	snap := r.Refresh(context.Background())
	if store.Load() != snap {
		t.Fatal("Refresh did not publish the snapshot it returned")
	}
	if len(heard) != 1 || heard[0] != snap {
		t.Errorf("OnRefresh heard %v, want the published snapshot once", heard)
	}
	if len(snap.Results) != n {
		t.Fatalf("got %d results, want %d", len(snap.Results), n)
	}
	for i, res := range snap.Results {
		want := snapshot.Result{
			Name: fmt.Sprintf("check-%d", i), Kind: "kind", Hint: fmt.Sprintf("hint %d", i), OK: i%2 == 0,
			Detail: fmt.Sprintf("detail %d", i), Checked: clock.Now(), Took: 0,
		}
		if res != want {
			t.Errorf("result %d = %+v, want %+v", i, res, want)
		}
	}
	if !snap.Taken.Equal(clock.Now()) {
		t.Errorf("Taken = %v, want %v", snap.Taken, clock.Now())
	}
	if snap.Ready() || !snap.ReadySince.IsZero() {
		t.Errorf("Ready() = %v, ReadySince = %v with failing checks", snap.Ready(), snap.ReadySince)
	}
}

func TestRefreshDefaultDetail(t *testing.T) {
	var store snapshot.Store
	r := NewRunner([]Check{
		{Name: "up", Prober: ProberFunc(func(context.Context) Outcome { return Outcome{OK: true} })},
		{Name: "down", Prober: ProberFunc(func(context.Context) Outcome { return Outcome{} })},
		{Name: "err", Prober: ProberFunc(func(context.Context) Outcome { return Outcome{Err: true} })},
	}, &store, Options{})
	s := r.Refresh(context.Background())
	for i, want := range []string{"ok", "not ready", "not ready"} {
		if s.Results[i].Detail != want {
			t.Errorf("%s detail = %q, want %q", s.Results[i].Name, s.Results[i].Detail, want)
		}
	}
}

func TestRefreshWithoutChecks(t *testing.T) {
	var store snapshot.Store
	clock := newClock()
	s := NewRunner(nil, &store, Options{Now: clock.Now}).Refresh(context.Background())
	if !s.Ready() || !s.ReadySince.Equal(clock.Now()) || store.Load() != s {
		t.Errorf("no checks: %+v, want a ready snapshot published", s)
	}
}

func TestReadySince(t *testing.T) {
	gating := &switchProber{}
	clock := newClock()
	var store snapshot.Store
	r := NewRunner([]Check{
		{Name: "gating", Prober: gating},
	}, &store, Options{Now: clock.Now})

	t0 := clock.Now()
	steps := []struct {
		name      string
		gatingOK  bool
		readyAt   time.Duration // ReadySince - t0; -1: zero
		wantReady bool
	}{
		{"first refresh ready", true, 0, true},
		{"still ready: kept", true, 0, true},
		{"still ready: kept again", true, 0, true},
		{"gating failure resets", false, -1, false},
		{"still failing", false, -1, false},
		{"ready again: new time", true, 5 * time.Second, true},
		{"kept after recovery", true, 5 * time.Second, true},
	}
	for i, st := range steps {
		now := t0.Add(time.Duration(i) * time.Second)
		clock.mu.Lock()
		clock.t = now
		clock.mu.Unlock()
		gating.ok.Store(st.gatingOK)
		s := r.Refresh(context.Background())
		if s.Ready() != st.wantReady {
			t.Errorf("%s: Ready() = %v", st.name, s.Ready())
		}
		if !s.Taken.Equal(now) {
			t.Errorf("%s: Taken = %v, want %v", st.name, s.Taken, now)
		}
		want := time.Time{}
		if st.readyAt >= 0 {
			want = t0.Add(st.readyAt)
		}
		if !s.ReadySince.Equal(want) {
			t.Errorf("%s: ReadySince = %v, want %v", st.name, s.ReadySince, want)
		}
	}
}

func TestRefreshLogsTransitions(t *testing.T) {
	log, hook := testutil.CaptureLogger()
	a, b := &switchProber{}, &switchProber{}
	a.ok.Store(true)
	var store snapshot.Store
	r := NewRunner([]Check{{Name: "a", Kind: "file", Prober: a}, {Name: "b", Kind: "file", Prober: b}}, &store, Options{})
	ctx := testutil.Context(log)

	type entry struct{ level, msg, check string }
	entries := func() []entry {
		var out []entry
		for _, e := range hook.AllEntries() {
			c, _ := e.Data["check"].(string)
			out = append(out, entry{e.Level.String(), e.Message, c})
		}
		hook.Reset()
		return out
	}
	steps := []struct {
		name string
		aOK  bool
		bOK  bool
		want []entry
	}{
		{"first refresh logs every check", true, false, []entry{{"info", "check passes", "a"}, {"warning", "check fails", "b"}}},
		{"no change, no log", true, false, nil},
		{"b recovers: node ready", true, true, []entry{{"info", "check passes", "b"}, {"info", "node ready: every check passes", ""}}},
		{"still ready, no log", true, true, nil},
		{"a fails", false, true, []entry{{"warning", "check fails", "a"}}},
	}
	for _, st := range steps {
		a.ok.Store(st.aOK)
		b.ok.Store(st.bOK)
		r.Refresh(ctx)
		got := entries()
		if fmt.Sprint(got) != fmt.Sprint(st.want) {
			t.Errorf("%s: logged %v, want %v", st.name, got, st.want)
		}
	}
}

func TestProbeTimeout(t *testing.T) {
	const timeout = 50 * time.Millisecond
	var deadline atomic.Value
	blocking := ProberFunc(func(ctx context.Context) Outcome {
		if d, ok := ctx.Deadline(); ok {
			deadline.Store(d)
		}
		<-ctx.Done()
		return Outcome{Detail: "gave up: " + ctx.Err().Error(), Err: errors.Is(ctx.Err(), context.DeadlineExceeded)}
	})
	fast := ProberFunc(func(context.Context) Outcome { return Outcome{OK: true} })
	var store snapshot.Store
	r := NewRunner([]Check{{Name: "blocks", Prober: blocking}, {Name: "fast", Prober: fast}}, &store, Options{Timeout: timeout})

	start := time.Now()
	type result struct{ s *snapshot.Snapshot }
	ch := make(chan result, 1)
	go func() { ch <- result{r.Refresh(context.Background())} }()
	var s *snapshot.Snapshot
	select {
	case res := <-ch:
		s = res.s
	case <-time.After(10 * time.Second):
		t.Fatal("Refresh did not return: the probe timeout is not applied")
	}
	elapsed := time.Since(start)
	if elapsed < timeout {
		t.Errorf("Refresh returned after %v, before the %v timeout", elapsed, timeout)
	}
	d, ok := deadline.Load().(time.Time)
	if !ok {
		t.Fatal("the probe's context has no deadline")
	}
	if d.Sub(start) > timeout+time.Second {
		t.Errorf("probe deadline %v after start, want about %v", d.Sub(start), timeout)
	}
	if s.Results[0].OK || !strings.Contains(s.Results[0].Detail, "deadline exceeded") {
		t.Errorf("timed-out probe result = %+v", s.Results[0])
	}
	if !s.Results[1].OK {
		t.Errorf("fast probe result = %+v", s.Results[1])
	}
}

func TestRefreshHonoursParentContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var store snapshot.Store
	r := NewRunner([]Check{{Name: "blocks", Prober: ProberFunc(func(ctx context.Context) Outcome {
		<-ctx.Done()
		return Outcome{Detail: ctx.Err().Error()}
	})}}, &store, Options{Timeout: time.Minute})
	s := r.Refresh(ctx)
	if s.Results[0].OK || s.Results[0].Detail != context.Canceled.Error() {
		t.Errorf("result = %+v, want the cancellation seen by the probe", s.Results[0])
	}
}

func TestRunRefreshesEveryInterval(t *testing.T) {
	p := &countingProber{}
	var store snapshot.Store
	r := NewRunner([]Check{{Name: "c", Prober: p}}, &store, Options{Interval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	testutil.WaitFor(t, "three refreshes", func() bool { return p.n.Load() >= 3 })
	cancel()
	waitClosed(t, done)
	if store.Load() == nil {
		t.Error("Run published nothing")
	}
}

func TestKickRefreshesPromptly(t *testing.T) {
	p := &countingProber{}
	var store snapshot.Store
	var refreshes atomic.Int64
	r := NewRunner([]Check{{Name: "c", Prober: p}}, &store, Options{
		Interval: time.Hour, MaxBackoff: time.Hour,
		OnRefresh: func(*snapshot.Snapshot) { refreshes.Add(1) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); waitClosed(t, done) }()

	testutil.WaitFor(t, "the first refresh", func() bool { return refreshes.Load() == 1 })
	for want := int64(2); want <= 4; want++ {
		r.Kick()
		// The interval is an hour: only the kick can cause this refresh.
		testutil.WaitFor(t, fmt.Sprintf("refresh %d after a kick", want), func() bool { return refreshes.Load() >= want })
	}
	if got := p.n.Load(); got < 4 {
		t.Errorf("prober called %d times, want at least 4", got)
	}
}

func TestKickNeverBlocks(t *testing.T) {
	var store snapshot.Store
	r := NewRunner(nil, &store, Options{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000; i++ {
			r.Kick() // nobody runs: kicks coalesce instead of blocking
		}
	}()
	waitClosed(t, done)
}

func TestRunStopsWhenCancelled(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		early bool // cancel before Run starts
	}{
		{"idle between refreshes", Options{Interval: time.Hour}, false},
		{"backing off after errors", Options{Interval: time.Hour, MaxBackoff: 2 * time.Hour}, false},
		{"cancelled before start", Options{Interval: time.Hour}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int64
			prober := ProberFunc(func(context.Context) Outcome {
				calls.Add(1)
				return Outcome{Err: tt.opts.MaxBackoff > 0}
			})
			var store snapshot.Store
			r := NewRunner([]Check{{Name: "c", Prober: prober}}, &store, tt.opts)
			ctx, cancel := context.WithCancel(context.Background())
			if tt.early {
				cancel()
			}
			done := make(chan struct{})
			go func() { defer close(done); r.Run(ctx) }()
			testutil.WaitFor(t, "the first refresh", func() bool { return store.Load() != nil })
			cancel()
			waitClosed(t, done)
		})
	}
}

func TestRunStopsDuringKickGap(t *testing.T) {
	var store snapshot.Store
	r := NewRunner([]Check{{Name: "c", Prober: &countingProber{}}}, &store, Options{Interval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	r.Kick() // consumed right after the first refresh, so Run waits out the minimum gap
	go func() { defer close(done); r.Run(ctx) }()
	testutil.WaitFor(t, "the first refresh", func() bool { return store.Load() != nil })
	cancel()
	waitClosed(t, done)
}

func TestConcurrentRefreshes(t *testing.T) {
	clock := newClock()
	var store snapshot.Store
	p := &switchProber{}
	p.ok.Store(true)
	r := NewRunner([]Check{{Name: "a", Prober: p}, {Name: "b", Prober: &countingProber{}}}, &store, Options{Now: clock.Now})
	first := r.Refresh(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				clock.Advance(time.Millisecond)
				s := r.Refresh(context.Background())
				if !s.ReadySince.Equal(first.ReadySince) {
					t.Errorf("ReadySince moved to %v while always ready (was %v)", s.ReadySince, first.ReadySince)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestNewRunnerDefaults(t *testing.T) {
	var store snapshot.Store
	tests := []struct {
		in                            Options
		interval, maxBackoff, timeout time.Duration
	}{
		{Options{}, time.Second, time.Second, time.Second},
		{Options{Interval: -1, Timeout: -1}, time.Second, time.Second, time.Second},
		{Options{Interval: 2 * time.Second, MaxBackoff: time.Second}, 2 * time.Second, 2 * time.Second, time.Second},
		{Options{Interval: 2 * time.Second, MaxBackoff: time.Minute, Timeout: 3 * time.Second}, 2 * time.Second, time.Minute, 3 * time.Second},
	}
	for _, tt := range tests {
		r := NewRunner(nil, &store, tt.in)
		if r.opts.Interval != tt.interval || r.opts.MaxBackoff != tt.maxBackoff || r.opts.Timeout != tt.timeout {
			t.Errorf("NewRunner(%+v) options = %v, %v, %v; want %v, %v, %v", tt.in,
				r.opts.Interval, r.opts.MaxBackoff, r.opts.Timeout, tt.interval, tt.maxBackoff, tt.timeout)
		}
		if r.opts.Now == nil {
			t.Errorf("NewRunner(%+v) left Now nil", tt.in)
		}
	}
}

func waitClosed(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

// A probe that ignores its context cannot stall refreshes: the refresh publishes "did not
// answer" once the timeout (plus grace) passes, and does not start a second copy of the probe
// while the first is still running.
func TestStuckProbeDoesNotStallRefresh(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int64
	stuck := ProberFunc(func(context.Context) Outcome {
		calls.Add(1)
		<-release // ignores ctx
		return Outcome{OK: true}
	})
	var store snapshot.Store
	r := NewRunner([]Check{{Name: "stuck", Kind: "socket", Prober: stuck}, {Name: "fine", Prober: &countingProber{}}},
		&store, Options{Timeout: 20 * time.Millisecond})
	released := false
	t.Cleanup(func() {
		if !released {
			close(release)
		}
	})

	for i := 0; i < 2; i++ {
		ch := make(chan *snapshot.Snapshot, 1)
		go func() { ch <- r.Refresh(context.Background()) }()
		var s *snapshot.Snapshot
		select {
		case s = <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("refresh %d stalled behind a stuck probe", i+1)
		}
		if s.Results[0].OK || !strings.Contains(s.Results[0].Detail, "did not answer within 20ms") {
			t.Errorf("refresh %d: stuck probe result %+v", i+1, s.Results[0])
		}
		if !s.Results[1].OK {
			t.Errorf("refresh %d: the other probe's result was lost: %+v", i+1, s.Results[1])
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("stuck probe started %d times, want 1 (no pile-up)", n)
	}
	close(release)
	released = true
	testutil.WaitFor(t, "the probe to run again once it returned", func() bool {
		return r.Refresh(context.Background()).Results[0].OK
	})
}

// A probe that panics is an inconclusive failure of its check, not a crash of the plugin.
func TestRefreshSurvivesAPanickingProbe(t *testing.T) {
	var store snapshot.Store
	r := NewRunner([]Check{
		{Name: "odd", Kind: "iptables", Prober: ProberFunc(func(context.Context) Outcome { panic("index out of range") })},
		{Name: "fine", Kind: "file", Prober: ProberFunc(func(context.Context) Outcome { return Outcome{OK: true} })},
	}, &store, Options{})
	s := r.Refresh(testutil.Context(testutil.QuietLogger()))
	if s.Results[0].OK || !strings.Contains(s.Results[0].Detail, "internal error") || !s.Results[1].OK {
		t.Errorf("results %+v: want the panicking check failed with an internal error, the other passing", s.Results)
	}
	if s2 := r.Refresh(testutil.Context(testutil.QuietLogger())); s2.Results[0].Name != "odd" {
		t.Errorf("the next refresh lost the check: %+v", s2.Results)
	}
}

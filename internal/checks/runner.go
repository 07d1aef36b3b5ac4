// Package checks runs the node readiness checks in the background and publishes their results
// as an immutable snapshot that the RunPodSandbox hook reads.
package checks

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/backoff"
	"github.com/sandbox-guard/sandbox-guard/internal/snapshot"
)

// Outcome is what one probe found.
type Outcome struct {
	OK     bool
	Detail string // what was found, written for a person: "/run/x does not exist"
	// Err marks an outcome that could not be determined (as opposed to a condition that is
	// false); the runner backs off while probes error.
	Err bool
}

// Prober answers one readiness question. Probe must honour ctx and never panic on odd input.
type Prober interface {
	Probe(ctx context.Context) Outcome
}

// ProberFunc adapts a function to Prober.
type ProberFunc func(ctx context.Context) Outcome

// Probe calls f.
func (f ProberFunc) Probe(ctx context.Context) Outcome { return f(ctx) }

// Check is a named probe.
type Check struct {
	Name   string
	Kind   string
	Hint   string
	Prober Prober
}

// Options tune a Runner.
type Options struct {
	Interval   time.Duration // between refreshes while all is well
	MaxBackoff time.Duration // cap of the delay while probes error
	Timeout    time.Duration // per probe
	Now        func() time.Time
	// OnRefresh, when set, hears about every published snapshot.
	OnRefresh func(*snapshot.Snapshot)
	// WatchDirs trigger a refresh when something in them changes (CNI config and binaries).
	WatchDirs []string
}

// Runner refreshes checks and publishes snapshots into a Store.
type Runner struct {
	checks []Check
	store  *snapshot.Store
	opts   Options
	kick   chan struct{}

	mu       sync.Mutex // serialises refreshes, so ReadySince and transitions stay consistent
	previous *snapshot.Snapshot
	inflight []atomic.Bool // per check: a probe is running
	lastOK   []time.Time   // per check: when it last passed (guarded by mu)
}

// NewRunner returns a runner for checks publishing into store.
func NewRunner(checks []Check, store *snapshot.Store, opts Options) *Runner {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.MaxBackoff < opts.Interval {
		opts.MaxBackoff = opts.Interval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Runner{checks: checks, store: store, opts: opts, kick: make(chan struct{}, 1), inflight: make([]atomic.Bool, len(checks)), lastOK: make([]time.Time, len(checks))}
}

// Kick asks for a refresh as soon as possible, without waiting for it. Used after a rejection,
// so that a condition that has just cleared is seen quickly.
func (r *Runner) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Refresh runs every probe now, concurrently, and publishes the result.
func (r *Runner) Refresh(ctx context.Context) *snapshot.Snapshot {
	snap, _ := r.refresh(ctx)
	return snap
}

// refresh also reports whether any probe could not decide, which the snapshot does not carry
// (it holds only what the gate needs).
func (r *Runner) refresh(ctx context.Context) (*snapshot.Snapshot, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	results := make([]snapshot.Result, len(r.checks))
	errored := make([]bool, len(r.checks))
	type answer struct {
		i   int
		res snapshot.Result
		err bool
	}
	answers := make(chan answer, len(r.checks))
	pending := 0
	for i, c := range r.checks {
		if !r.inflight[i].CompareAndSwap(false, true) {
			// A probe that ignored its deadline is still running: do not pile up another.
			results[i], errored[i] = r.stuck(c), true
			continue
		}
		pending++
		go func() {
			res, err := r.probeRecovering(ctx, c)
			r.inflight[i].Store(false) // before answering, so the next refresh may probe again
			answers <- answer{i, res, err}
		}()
	}
	// Wait for every probe, but never much past the probe timeout: a probe stuck in the kernel
	// or a library must not stop the snapshot (and with it the gate) from being refreshed.
	grace := time.NewTimer(r.opts.Timeout + 500*time.Millisecond)
	defer grace.Stop()
	answered := make([]bool, len(r.checks))
wait:
	for pending > 0 {
		select {
		case a := <-answers:
			results[a.i], errored[a.i], answered[a.i] = a.res, a.err, true
			pending--
		case <-grace.C:
			break wait
		}
	}
	for i, c := range r.checks {
		if !answered[i] && !errored[i] {
			results[i], errored[i] = r.stuck(c), true
		}
	}
	r.keepLastGood(results, errored)
	snap := &snapshot.Snapshot{Results: results, Taken: r.opts.Now()}
	if snap.Ready() {
		snap.ReadySince = snap.Taken
		if r.previous != nil && r.previous.Ready() {
			snap.ReadySince = r.previous.ReadySince
		}
	}
	r.logTransitions(ctx, snap)
	r.previous = snap
	r.store.Publish(snap)
	if r.opts.OnRefresh != nil {
		r.opts.OnRefresh(snap)
	}
	for _, e := range errored {
		if e {
			return snap, true
		}
	}
	return snap, false
}

// keepLastGood keeps a check passing through inconclusive probes (a timeout or an error, not a
// "no") for a short grace: on a starved node (load far above the cores) a probe can miss its
// deadline while the rules are in place, and refusing pods for that would be the gate's own
// outage. A definite "no" (chain missing, 503) fails the check at once; a check that has not passed
// within the grace fails too.
func (r *Runner) keepLastGood(results []snapshot.Result, errored []bool) {
	grace := max(5*r.opts.Interval, 5*time.Second)
	now := r.opts.Now()
	for i := range results {
		switch {
		case results[i].OK:
			r.lastOK[i] = now
		case errored[i] && !r.lastOK[i].IsZero() && now.Sub(r.lastOK[i]) < grace &&
			r.previous != nil && i < len(r.previous.Results) && r.previous.Results[i].OK:
			prev := r.previous.Results[i]
			results[i].OK = true
			results[i].Detail = strings.TrimSuffix(prev.Detail, inconclusiveSuffix(prev.Detail)) +
				" (last probe inconclusive: " + results[i].Detail + ")"
		}
	}
}

func inconclusiveSuffix(d string) string {
	if i := strings.Index(d, " (last probe inconclusive: "); i >= 0 {
		return d[i:]
	}
	return ""
}

// stuck is the result of a probe that has not answered within its timeout.
func (r *Runner) stuck(c Check) snapshot.Result {
	return snapshot.Result{Name: c.Name, Kind: c.Kind, Hint: c.Hint, Checked: r.opts.Now(),
		Detail: fmt.Sprintf("the %s probe did not answer within %v", c.Kind, r.opts.Timeout)}
}

// probeRecovering is probe, with a panicking probe (odd kernel or network input) turned into an
// inconclusive result instead of a crash of the whole plugin.
func (r *Runner) probeRecovering(ctx context.Context, c Check) (res snapshot.Result, errored bool) {
	defer func() {
		if p := recover(); p != nil {
			log.G(ctx).WithFields(logrus.Fields{"check": c.Name, "panic": fmt.Sprint(p), "stack": string(debug.Stack())}).Error("probe panicked")
			res = snapshot.Result{Name: c.Name, Kind: c.Kind, Hint: c.Hint, Checked: r.opts.Now(),
				Detail: fmt.Sprintf("the %s probe failed with an internal error (see the log)", c.Kind)}
			errored = true
		}
	}()
	return r.probe(ctx, c)
}

func (r *Runner) probe(ctx context.Context, c Check) (res snapshot.Result, errored bool) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	start := r.opts.Now()
	out := c.Prober.Probe(ctx)
	took := r.opts.Now().Sub(start)
	if out.Detail == "" {
		out.Detail = map[bool]string{true: "ok", false: "not ready"}[out.OK]
	}
	return snapshot.Result{
		Name: c.Name, Kind: c.Kind, Hint: c.Hint, OK: out.OK, Detail: out.Detail,
		Checked: start, Took: took,
	}, out.Err
}

func (r *Runner) logTransitions(ctx context.Context, snap *snapshot.Snapshot) {
	for i, res := range snap.Results {
		var was *snapshot.Result
		if r.previous != nil && i < len(r.previous.Results) {
			was = &r.previous.Results[i]
		}
		if was != nil && was.OK == res.OK {
			continue
		}
		l := log.G(ctx).WithFields(logrus.Fields{"check": res.Name, "kind": res.Kind, "detail": res.Detail})
		if res.OK {
			l.Info("check passes")
		} else {
			l.Warn("check fails")
		}
	}
	if (r.previous == nil || !r.previous.Ready()) && snap.Ready() {
		log.G(ctx).Info("node ready: every check passes")
	}
}

// Run refreshes until ctx ends: at once, then every Interval, sooner when kicked, and backing
// off (up to MaxBackoff) while probes cannot be evaluated or a refresh is expensive.
func (r *Runner) Run(ctx context.Context) {
	if len(r.opts.WatchDirs) > 0 {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.watch(ctx)
		}()
		defer wg.Wait() // Run returns only when nothing of it runs any more
	}
	b := backoff.New(backoff.Policy{Initial: r.opts.Interval, Max: r.opts.MaxBackoff, Jitter: 0.1})
	const minGap = 100 * time.Millisecond // kicks never turn into a busy loop
	for {
		start := time.Now()
		_, errored := r.refresh(ctx)
		delay := r.opts.Interval
		if errored {
			delay = b.Next()
		} else {
			b.Reset()
		}
		// A refresh that costs much (a legacy iptables table read on a big node) runs less often.
		if took := time.Since(start); 10*took > delay {
			delay = min(10*took, r.opts.MaxBackoff)
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-r.kick:
			timer.Stop()
			if !backoff.Sleep(ctx, minGap-time.Since(start)) {
				return
			}
		case <-timer.C:
		}
	}
}

// watch kicks a refresh when a watched directory changes, so a CNI config written (or removed)
// is seen at once rather than at the next interval. Directories that do not exist yet are added
// when they appear; the interval refresh covers the meantime.
func (r *Runner) watch(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.G(ctx).WithError(err).Warn("cannot watch CNI directories; relying on the refresh interval")
		return
	}
	defer func() { _ = w.Close() }()
	watched := map[string]bool{}
	addMissing := func() {
		for _, d := range r.opts.WatchDirs {
			if !watched[d] && w.Add(d) == nil {
				watched[d] = true
			}
		}
	}
	addMissing()
	retry := time.NewTicker(5 * time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Remove) && watched[ev.Name] {
				delete(watched, ev.Name) // the directory itself went away
			}
			r.Kick()
		case _ = <-w.Errors:
		case <-retry.C:
			addMissing()
		}
	}
}

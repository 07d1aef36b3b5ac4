package checks

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/snapshot"
)

type scriptedProber struct{ out atomic.Pointer[Outcome] }

func (p *scriptedProber) set(o Outcome)                 { p.out.Store(&o) }
func (p *scriptedProber) Probe(context.Context) Outcome { return *p.out.Load() }

// An inconclusive probe (an error or a timeout, e.g. on a CPU-starved node) keeps a passing check
// passing for a short grace; a definite "no" fails it at once; the grace runs out.
func TestInconclusiveProbeKeepsLastGoodForAGrace(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := &scriptedProber{}
	var store snapshot.Store
	r := NewRunner([]Check{{Name: "rules", Prober: p}}, &store, Options{Interval: time.Second, Now: func() time.Time { return now }})
	step := func(o Outcome, advance time.Duration) snapshot.Result {
		now = now.Add(advance)
		p.set(o)
		return r.Refresh(context.Background()).Results[0]
	}
	if got := step(Outcome{OK: true, Detail: "present"}, 0); !got.OK {
		t.Fatalf("first refresh: %+v", got)
	}
	got := step(Outcome{Err: true, Detail: "timed out"}, time.Second)
	if !got.OK || !strings.Contains(got.Detail, "present (last probe inconclusive: timed out)") {
		t.Fatalf("inconclusive probe within the grace: %+v, want still passing", got)
	}
	if got := step(Outcome{Err: true, Detail: "timed out"}, 2*time.Second); !got.OK || strings.Count(got.Detail, "inconclusive") != 1 {
		t.Fatalf("second inconclusive probe: %+v", got)
	}
	if got := step(Outcome{Err: true, Detail: "timed out"}, 3*time.Second); got.OK {
		t.Fatalf("inconclusive for 6s, past the 5s grace: %+v, want failing", got)
	}
	step(Outcome{OK: true, Detail: "present"}, time.Second)
	if got := step(Outcome{Detail: "missing"}, time.Second); got.OK {
		t.Fatalf("a definite no within the grace: %+v, want failing at once", got)
	}
	// The last result was a definite no: an inconclusive probe does not bring back a pass,
	// although the last pass (2s ago) is inside the grace.
	if got := step(Outcome{Err: true, Detail: "timed out"}, time.Second); got.OK {
		t.Fatalf("inconclusive after a definite no: %+v, want failing", got)
	}
}

// Package backoff is the one place where sandbox-guard waits before trying again: capped
// exponential back-off with jitter, so that nothing retries a failing registry, API or socket
// in a hot loop.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy describes how long to wait between attempts.
type Policy struct {
	Initial time.Duration // first delay
	Max     time.Duration // cap for any delay
	Factor  float64       // growth per failure; 2 when zero
	Jitter  float64       // fraction of the delay randomised, in [0,1]; e.g. 0.2 = ±20%
}

// Default suits network retries on a node: 200ms doubling to 30s, ±20%.
func Default() Policy {
	return Policy{Initial: 200 * time.Millisecond, Max: 30 * time.Second, Factor: 2, Jitter: 0.2}
}

// Backoff tracks consecutive failures under one Policy. Not safe for concurrent use.
type Backoff struct {
	policy   Policy
	failures int
	rand     func() float64
}

// New returns a Backoff for p.
func New(p Policy) *Backoff {
	if p.Factor <= 1 {
		p.Factor = 2
	}
	if p.Initial <= 0 {
		p.Initial = 100 * time.Millisecond
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	return &Backoff{policy: p, rand: rand.Float64}
}

// Next records a failure and returns how long to wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	d := float64(b.policy.Initial)
	for i := 0; i < b.failures && d < float64(b.policy.Max); i++ {
		d *= b.policy.Factor
	}
	b.failures++
	if d > float64(b.policy.Max) {
		d = float64(b.policy.Max)
	}
	if j := b.policy.Jitter; j > 0 {
		d += d * j * (2*b.rand() - 1)
	}
	return time.Duration(d)
}

// Failures is the number of failures since the last Reset.
func (b *Backoff) Failures() int { return b.failures }

// Reset forgets earlier failures, after a success.
func (b *Backoff) Reset() { b.failures = 0 }

// Sleep waits d or until ctx is done; it reports whether the full delay passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Retry calls fn until it succeeds, returns a permanent error, or ctx ends, waiting per p in
// between. onRetry, when set, hears about every failure and the delay before the next try.
func Retry(ctx context.Context, p Policy, fn func(context.Context) error, onRetry func(err error, next time.Duration)) error {
	b := New(p)
	for {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if perm, ok := err.(permanent); ok {
			return perm.err
		}
		d := b.Next()
		if onRetry != nil {
			onRetry(err, d)
		}
		if !Sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error { return permanent{err: err} }

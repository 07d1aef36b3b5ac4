package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNextGrowsAndCaps(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		want   []time.Duration
	}{
		{"doubling capped", Policy{Initial: time.Second, Max: 5 * time.Second}, []time.Duration{1, 2, 4, 5, 5}},
		{"factor three", Policy{Initial: time.Second, Max: 100 * time.Second, Factor: 3}, []time.Duration{1, 3, 9, 27, 81, 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.policy)
			for i, w := range tt.want {
				if got := b.Next(); got != w*time.Second {
					t.Fatalf("delay %d = %v, want %v", i, got, w*time.Second)
				}
			}
			b.Reset()
			if got := b.Next(); got != tt.want[0]*time.Second {
				t.Fatalf("after Reset delay = %v, want %v", got, tt.want[0]*time.Second)
			}
		})
	}
}

func TestJitterStaysInBounds(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		b := New(Policy{Initial: time.Second, Max: time.Second, Jitter: 0.2})
		b.rand = func() float64 { return r }
		d := b.Next()
		if d < 800*time.Millisecond || d > 1200*time.Millisecond {
			t.Fatalf("rand %v: delay %v outside ±20%% of 1s", r, d)
		}
	}
}

func TestRetry(t *testing.T) {
	p := Policy{Initial: time.Millisecond, Max: time.Millisecond}
	calls := 0
	err := Retry(context.Background(), p, func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}, nil)
	if err != nil || calls != 3 {
		t.Fatalf("Retry = %v after %d calls, want nil after 3", err, calls)
	}

	stop := errors.New("stop")
	calls = 0
	err = Retry(context.Background(), p, func(context.Context) error { calls++; return Permanent(stop) }, nil)
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Retry = %v after %d calls, want %v after 1", err, calls, stop)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = Retry(ctx, p, func(context.Context) error { return errors.New("fail") }, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Retry with cancelled context = %v, want context.Canceled", err)
	}
}

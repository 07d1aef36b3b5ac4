package testutil

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// recorder is a testing.TB that records failures; Fatalf ends the calling goroutine as the
// real one does.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed []string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
	r.mu.Unlock()
	runtime.Goexit()
}

func TestWaitFor(t *testing.T) {
	saved := deadline
	deadline = 100 * time.Millisecond
	t.Cleanup(func() { deadline = saved })
	tests := []struct {
		name     string
		holdsAt  int // the poll at which cond first holds; 0: never
		wantFail bool
	}{
		{name: "holds at once", holdsAt: 1},
		{name: "holds after some polls", holdsAt: 5},
		{name: "never holds", wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{TB: t}
			polls := 0
			returned := false
			done := make(chan struct{})
			go func() {
				defer close(done)
				WaitFor(r, "the thing", func() bool { polls++; return tt.holdsAt > 0 && polls >= tt.holdsAt })
				returned = true
			}()
			<-done
			if tt.wantFail {
				if returned || len(r.failed) != 1 || !strings.Contains(r.failed[0], "waiting for the thing") {
					t.Errorf("returned %v, failures %q; want one failure naming what it waited for", returned, r.failed)
				}
				if polls < 2 {
					t.Errorf("cond polled %d times before giving up", polls)
				}
				return
			}
			if !returned || len(r.failed) != 0 || polls != tt.holdsAt {
				t.Errorf("returned %v after %d polls, failures %q; want a return after %d polls", returned, polls, r.failed, tt.holdsAt)
			}
		})
	}
}

func TestLoggers(t *testing.T) {
	if q := QuietLogger(); q.Out != io.Discard || q.Level != logrus.InfoLevel {
		t.Errorf("quiet logger writes to %T at level %v, want io.Discard at info", q.Out, q.Level)
	}

	l, hook := CaptureLogger()
	l.WithField("k", "v").Trace("fine detail")
	l.Error("broken")
	entries := hook.AllEntries()
	if len(entries) != 2 || entries[0].Level != logrus.TraceLevel || entries[0].Data["k"] != "v" || entries[1].Message != "broken" {
		t.Errorf("captured %+v, want the trace and the error entry", entries)
	}
	if l.Out != io.Discard {
		t.Errorf("capturing logger writes to %T, want nothing written", l.Out)
	}
}

package logging

import (
	"bytes"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// stuck is a writer that never returns until released: a full pipe, a hung file system.
type stuck struct{ release chan struct{} }

func (s stuck) Write(p []byte) (int, error) {
	<-s.release
	return len(p), nil
}

// A logger over Async never blocks on a writer that hangs: every line returns, the overflow is
// counted.
func TestAsyncNeverBlocksOnAStalledWriter(t *testing.T) {
	w := stuck{release: make(chan struct{})}
	a := NewAsync(w, 16)
	l := logrus.New()
	l.SetOutput(a)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			l.Warn("sandbox-guard: pod default/web not started: node network not ready")
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("logging blocked on a stalled writer")
	}
	if d := a.Dropped(); d < 1000-16-1 {
		t.Errorf("dropped %d lines, want the overflow beyond the queue (>= %d)", d, 1000-16-1)
	}
	close(w.release)
	a.Close(10 * time.Second)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAsyncWritesInOrderAndDrainsOnClose(t *testing.T) {
	var out syncBuffer
	a := NewAsync(&out, 1024)
	for i := range 100 {
		_, _ = a.Write([]byte{byte('a' + i%26), '\n'})
	}
	a.Close(10 * time.Second)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 100 || lines[0] != "a" || lines[25] != "z" || lines[26] != "a" || a.Dropped() != 0 {
		t.Errorf("%d lines (dropped %d), first %q: want 100 in order", len(lines), a.Dropped(), lines[0])
	}
	if n, err := a.Write([]byte("late\n")); n != 5 || err != nil || a.Dropped() != 1 {
		t.Errorf("Write after Close = %d, %v, dropped %d: want it dropped quietly", n, err, a.Dropped())
	}
	a.Close(time.Second) // twice: no panic
}

// Close gives up on a writer that never returns instead of hanging the process's exit.
func TestAsyncCloseAbandonsAStalledWriter(t *testing.T) {
	w := stuck{release: make(chan struct{})}
	defer close(w.release)
	a := NewAsync(w, 4)
	_, _ = a.Write([]byte("x\n"))
	start := time.Now()
	a.Close(50 * time.Millisecond)
	if time.Since(start) > 20*time.Second {
		t.Error("Close waited for a stalled writer")
	}
}

// failing is a writer on a full disk.
type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

// A line the writer cannot write (a full disk) is lost and counted, like one dropped from the
// queue: sandbox_guard_log_lines_dropped_total then shows what the log file is missing.
func TestAsyncCountsLinesTheWriterFails(t *testing.T) {
	a := NewAsync(failing{}, 1024)
	for range 10 {
		_, _ = a.Write([]byte("line\n"))
	}
	a.Close(10 * time.Second)
	if d := a.Dropped(); d != 10 {
		t.Errorf("dropped %d, want the 10 lines the writer refused", d)
	}
}

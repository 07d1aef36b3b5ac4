// Package logging sets up logrus for the two ways sandbox-guard runs: to stderr when an operator
// or a DaemonSet starts it, and to a size-bounded file when containerd starts it (containerd
// discards a pre-registered plugin's stdout and stderr).
package logging

import (
	"bytes"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
)

// New returns a logger writing to out with the level and format of cfg.
func New(cfg config.Log, out io.Writer) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(out)
	Apply(l, cfg)
	return l
}

// Apply sets the level and format of cfg on l (invalid values were refused by config).
func Apply(l *logrus.Logger, cfg config.Log) {
	if lvl, err := logrus.ParseLevel(cfg.Level); err == nil {
		l.SetLevel(lvl)
	}
	if cfg.Format == "json" {
		l.SetFormatter(&logrus.JSONFormatter{})
	} else {
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: true})
	}
}

// File returns a writer to cfg.File that rotates at MaxSizeMB, keeping MaxBackups old files.
func File(cfg config.Log) io.WriteCloser {
	return &lumberjack.Logger{Filename: cfg.File, MaxSize: cfg.MaxSizeMB, MaxBackups: cfg.MaxBackups}
}

// Deferred holds what is logged before the destination is known (a pre-registered plugin learns
// its log file only from the configuration containerd sends), then passes it on.
type Deferred struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

// Write buffers p until SetOutput, then writes through.
func (d *Deferred) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.out != nil {
		return d.out.Write(p)
	}
	if d.buf.Len() > 1<<20 { // bounded: drop the oldest half rather than grow without limit
		rest := d.buf.Bytes()[d.buf.Len()/2:]
		d.buf = *bytes.NewBuffer(append([]byte(nil), rest...))
	}
	return d.buf.Write(p)
}

// SetOutput flushes what was buffered to w and sends everything after to w.
func (d *Deferred) SetOutput(w io.Writer) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.out = w
	_, err := w.Write(d.buf.Bytes())
	d.buf.Reset()
	return err
}

// Async hands writes to w on its own goroutine, so that a writer that stalls (a full stderr
// pipe, a hung file system) never blocks the caller: the RunPodSandbox hook logs under NRI's
// node-wide lock and must answer within 2 s. When lines queue up faster than w takes them, the
// newest are dropped and counted; so are the lines w fails to write.
type Async struct {
	w       io.Writer
	queue   chan []byte
	dropped atomic.Uint64
	done    chan struct{}

	mu     sync.RWMutex // held for reading while sending, so Close never closes under a sender
	closed bool
}

// NewAsync starts writing to w, queueing at most lines writes.
func NewAsync(w io.Writer, lines int) *Async {
	a := &Async{w: w, queue: make(chan []byte, lines), done: make(chan struct{})}
	go a.run()
	return a
}

func (a *Async) run() {
	defer close(a.done)
	for p := range a.queue {
		// A line the writer refuses (a full disk, a closed pipe) is lost like one dropped from
		// the queue, and counted the same way: there is nowhere else to report it.
		if _, err := a.w.Write(p); err != nil {
			a.dropped.Add(1)
		}
	}
}

// Write queues a copy of p, or drops it when the queue is full. It never blocks and never fails.
func (a *Async) Write(p []byte) (int, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		a.dropped.Add(1)
		return len(p), nil
	}
	select {
	case a.queue <- bytes.Clone(p):
	default:
		a.dropped.Add(1)
	}
	return len(p), nil
}

// Dropped counts the writes dropped so far, and those the writer failed.
func (a *Async) Dropped() uint64 { return a.dropped.Load() }

// Close stops taking writes and waits up to wait for the queue to drain into w (a stalled w is
// abandoned, not waited for). Writes after Close are dropped.
func (a *Async) Close(wait time.Duration) {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.queue)
	}
	a.mu.Unlock()
	select {
	case <-a.done:
	case <-time.After(wait):
	}
}

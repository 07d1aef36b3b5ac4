// Package logging sets up logrus for the two ways sandbox-guard runs: to stderr when an operator
// or a DaemonSet starts it, and to a size-bounded file when containerd starts it (containerd
// discards a pre-registered plugin's stdout and stderr).
package logging

import (
	"bytes"
	"io"
	"sync"

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

// Package testutil holds the helpers sandbox-guard's tests share: polling with a deadline
// instead of sleeping, and loggers that are quiet or that record what is logged. Only tests
// import it.
package testutil

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// deadline is how long WaitFor waits. It only matters when a test is failing: a condition that
// holds is seen within a few milliseconds.
var deadline = 20 * time.Second

// WaitFor polls cond until it holds, failing the test (naming what it waited for) when it still
// does not after 20 seconds. Tests never sleep to synchronise; they wait for what they need.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", deadline, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// QuietLogger returns a logger that writes nothing. Entries are still formatted for the levels
// it logs (Info by default), so code paths that build log lines still run.
func QuietLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// CaptureLogger returns a logger that writes nothing and records every entry, at every level,
// in the hook.
func CaptureLogger() (*logrus.Logger, *logtest.Hook) {
	l, hook := logtest.NewNullLogger()
	l.SetLevel(logrus.TraceLevel)
	return l, hook
}

// Context returns a background context carrying l as the logger (containerd's log.G reads it).
func Context(l *logrus.Logger) context.Context {
	return log.WithLogger(context.Background(), logrus.NewEntry(l))
}

package harness

import (
	"fmt"
	"testing"
	"time"
)

// Eventually polls cond every 50ms until it returns nil or the deadline passes, then fails the
// test with the last error. The tests never sleep to synchronise; they poll with a deadline.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("%s: not within %v: %v", what, timeout, err)
	}
}

// Poll is Eventually without a test: it returns the last error after the deadline.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// errorf is fmt.Errorf, for short conditions.
func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

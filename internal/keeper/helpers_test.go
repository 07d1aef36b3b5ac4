// Helpers of the keeper's tests; the fake containerd is keepertest.Fake.
package keeper_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// logLines renders every recorded entry with its fields, as a text log would show them.
func logLines(hook *logtest.Hook) []string {
	var out []string
	for _, e := range hook.AllEntries() {
		var b strings.Builder
		b.WriteString(e.Level.String() + " " + e.Message)
		for k, v := range e.Data {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
		out = append(out, b.String())
	}
	return out
}

// assertNoSecret fails when secret appears in any log line, error or text.
func assertNoSecret(t *testing.T, secret string, hook *logtest.Hook, errs []error, texts ...string) {
	t.Helper()
	if secret == "" {
		t.Fatal("empty secret")
	}
	for _, l := range logLines(hook) {
		if strings.Contains(l, secret) {
			t.Errorf("log line contains the ECR password: %s", l)
		}
	}
	for _, err := range errs {
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error contains the ECR password: %v", err)
		}
	}
	for _, s := range texts {
		if strings.Contains(s, secret) {
			t.Errorf("text contains the ECR password: %s", s)
		}
	}
}

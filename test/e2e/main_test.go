// Package e2e holds sandbox-guard's end-to-end tests: the real plugin binary against real
// containerd 2.x and 1.7, runc, CNI and an auth-protected registry (see harness).
package e2e

import (
	"os"
	"testing"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

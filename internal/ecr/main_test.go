package ecr

import (
	"flag"
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// While fuzzing, the fuzz engine's own goroutines may still be winding down when the run
	// ends; goleak would call that a leak at random (seen under load in CI).
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

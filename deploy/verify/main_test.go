package verify_test

import (
	"log/slog"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// Helm logs through slog's default logger, e.g. an INFO line for the chart's link to the
	// monitoring component's rules at every load.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(m.Run())
}

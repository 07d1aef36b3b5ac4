package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestBoundRuntime(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, tt := range []struct {
		name      string
		env       map[string]string
		gc        int
		limit     int64
		prevGC    int
		prevLimit int64
	}{
		{name: "no environment: the bounds", gc: preRegisteredGCPercent, limit: preRegisteredMemLimit, prevGC: 100, prevLimit: 1 << 62},
		{name: "GOGC set: kept", env: map[string]string{"GOGC": "80"}, gc: 80, limit: preRegisteredMemLimit, prevGC: 80, prevLimit: 1 << 62},
		{name: "GOMEMLIMIT set: kept", env: map[string]string{"GOMEMLIMIT": "64MiB"}, gc: preRegisteredGCPercent, limit: 64 << 20, prevGC: 100, prevLimit: 64 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// What the runtime would have read from that environment at start.
			debug.SetGCPercent(tt.prevGC)
			debug.SetMemoryLimit(tt.prevLimit)
			boundRuntime(func(k string) string { return tt.env[k] })
			if gc := debug.SetGCPercent(-1); gc != tt.gc {
				t.Errorf("GOGC %d, want %d", gc, tt.gc)
			}
			debug.SetGCPercent(tt.gc)
			if limit := debug.SetMemoryLimit(-1); limit != tt.limit {
				t.Errorf("memory limit %d, want %d", limit, tt.limit)
			}
		})
	}
}

func TestBoundRuntimeStopsProfiling(t *testing.T) {
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	runtime.MemProfileRate = 512 << 10
	boundRuntime(func(string) string { return "" })
	if runtime.MemProfileRate != 0 {
		t.Errorf("MemProfileRate %d after boundRuntime", runtime.MemProfileRate)
	}
}

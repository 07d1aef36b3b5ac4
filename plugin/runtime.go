package main

import (
	"runtime"
	"runtime/debug"
)

// Runtime bounds of the pre-registered plugin (docs/benchmarks.md, section 5, has their effect
// and cost): collect when the heap has grown by half of what was live (GOGC=50), and keep the
// runtime's memory near 12 MiB (a soft limit: a larger live heap is never refused, the
// collector only runs more often). containerd starts the plugin with no environment, so
// without them the runtime would let garbage grow to twice the live heap and keep it until a
// forced collection two minutes later (start-up garbage, gRPC's pooled 1 MB read buffers after
// an image export).
const (
	preRegisteredGCPercent = 50
	preRegisteredMemLimit  = 12 << 20
)

// boundRuntime applies the pre-registered bounds, each unless the environment sets it (GOGC,
// GOMEMLIMIT), and stops memory profiling: the plugin serves no profiles, and each sample
// keeps a stack bucket for the process's life.
func boundRuntime(getenv func(string) string) {
	runtime.MemProfileRate = 0
	if getenv("GOGC") == "" {
		debug.SetGCPercent(preRegisteredGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(preRegisteredMemLimit)
	}
}

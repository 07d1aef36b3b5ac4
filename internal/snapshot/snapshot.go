// Package snapshot holds the node state the RunPodSandbox hook decides from: an immutable value,
// replaced whole by the background workers and read with one atomic load.
package snapshot

import (
	"sync/atomic"
	"time"
)

// Result is what one check found when it last ran.
type Result struct {
	Name    string // the check's configured name
	Kind    string // file, iptables, cni, http, socket, image...
	Hint    string // who makes the condition true, for the rejection text
	OK      bool
	Detail  string // what was found, e.g. "iptables nat/KUBE-SERVICES missing"
	Checked time.Time
	Took    time.Duration
}

// Snapshot is the state of every check at one moment. Never modify one after Store.
type Snapshot struct {
	Results []Result
	Taken   time.Time
	// ReadySince is when every gating check last became OK; zero while any fails.
	ReadySince time.Time
}

// Ready reports whether every check passes.
func (s *Snapshot) Ready() bool {
	for _, r := range s.Results {
		if !r.OK {
			return false
		}
	}
	return true
}

// Failing returns the checks that do not pass, in configuration order.
func (s *Snapshot) Failing() []Result {
	var out []Result
	for _, r := range s.Results {
		if !r.OK {
			out = append(out, r)
		}
	}
	return out
}

// Store publishes snapshots from writers to readers without locks.
type Store struct{ p atomic.Pointer[Snapshot] }

// Load returns the latest snapshot, or nil before the first one.
func (s *Store) Load() *Snapshot { return s.p.Load() }

// Publish replaces the snapshot.
func (s *Store) Publish(snap *Snapshot) { s.p.Store(snap) }

// Package hook answers containerd's RunPodSandbox: one atomic load of the latest snapshot, the
// gate's pure decision, a log line for refusals, a metric. Nothing here waits on I/O other than
// the log writer.
package hook

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/gate"
	"github.com/sandbox-guard/sandbox-guard/internal/snapshot"
)

// Observer hears every decision, and every panic recovered (metrics).
type Observer interface {
	ObservePod(verdict string, failingChecks []string, took time.Duration)
	ObservePanic(where string)
}

// Hook is the RunPodSandbox decision of one configuration.
type Hook struct {
	policy *gate.Policy
	store  *snapshot.Store
	// kick asks the check runner for a refresh, so a condition that has just cleared is seen
	// before kubelet's next retry.
	kick    func()
	observe Observer
	log     *logrus.Entry
	now     func() time.Time
}

// New returns the hook deciding with policy from what store holds. kick and observe may be nil.
func New(policy *gate.Policy, store *snapshot.Store, kick func(), observe Observer, log *logrus.Entry) *Hook {
	if kick == nil {
		kick = func() {}
	}
	return &Hook{policy: policy, store: store, kick: kick, observe: observe, log: log, now: time.Now}
}

// Admit returns nil to start the pod, or the one-line reason containerd hands to kubelet.
func (h *Hook) Admit(_ context.Context, pod gate.Pod) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = h.recovered(pod, r)
		}
	}()
	start := time.Now()
	d := h.policy.Decide(pod, h.store.Load(), h.now())
	var failing []string
	for _, r := range d.Failing {
		failing = append(failing, r.Name)
	}
	if h.observe != nil {
		defer func() { h.observe.ObservePod(d.Verdict.String(), failing, time.Since(start)) }()
	}
	switch d.Verdict {
	case gate.Reject:
		h.kick()
		h.log.WithFields(logrus.Fields{"pod": pod.String(), "verdict": "reject", "checks": strings.Join(failing, ",")}).Warn(d.Why)
		return errors.New(d.Why)
	case gate.WouldReject:
		h.kick()
		h.log.WithFields(logrus.Fields{"pod": pod.String(), "verdict": "would-reject", "checks": strings.Join(failing, ",")}).
			Warn("warn mode, admitted; enforce would reject: " + d.Why)
	default:
		// Most pods land here: build the log entry only when someone reads debug lines.
		if h.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
			h.log.WithFields(logrus.Fields{"pod": pod.String(), "verdict": "admit", "reason": d.Why}).Debug("pod admitted")
		}
	}
	return nil
}

// recovered answers for a decision that panicked: enforce refuses the pod (a gate that crashed
// must not wave pods through, and the process must live on: containerd never restarts a
// pre-registered plugin), warn and off admit it. The stack goes to the log.
func (h *Hook) recovered(pod gate.Pod, r any) error {
	h.log.WithFields(logrus.Fields{"pod": pod.String(), "panic": fmt.Sprint(r), "stack": string(debug.Stack())}).
		Error("RunPodSandbox hook panicked; answering as the mode says")
	if h.observe != nil {
		h.observe.ObservePanic("hook")
	}
	if h.policy.Mode() == config.ModeEnforce {
		return errors.New(gate.Message(pod, "sandbox-guard could not decide (internal error, see its log)"))
	}
	return nil
}

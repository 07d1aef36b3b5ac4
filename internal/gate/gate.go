// Package gate decides, for one pod and one snapshot of node state, whether a pod sandbox may
// start. It is pure: no I/O, no clock of its own, so the RunPodSandbox hook stays fast and the
// decision is easy to test.
package gate

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/snapshot"
)

// Pod is what the gate needs to know about a pod sandbox.
type Pod struct {
	Namespace   string
	Name        string
	UID         string
	Labels      map[string]string
	HostNetwork bool
}

// String is the pod's namespace/name.
func (p Pod) String() string { return p.Namespace + "/" + p.Name }

// Verdict is the outcome for one pod.
type Verdict int

const (
	Admit       Verdict = iota // start the pod
	Reject                     // refuse the sandbox; kubelet retries
	WouldReject                // warn mode: admitted, but enforce would have refused it
)

func (v Verdict) String() string {
	switch v {
	case Admit:
		return "admit"
	case Reject:
		return "reject"
	case WouldReject:
		return "would-reject"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Decision is the verdict with its explanation.
type Decision struct {
	Verdict Verdict
	// Why names the rule that admitted the pod ("ready", "host network", "exempt namespace")
	// or, for Reject and WouldReject, holds the full one-line rejection message.
	Why string
	// Failing lists the checks that failed (Reject and WouldReject only).
	Failing []snapshot.Result
}

// Policy is the gate's configuration, compiled once so that Decide does no parsing.
type Policy struct {
	mode       config.Mode
	namespaces map[string]bool
	selector   labels.Selector // nil: no selector exemption
	settle     time.Duration
	// notReady begins the problem of a failing check: with kubeletRetry fast it contains
	// kubelet's "network is not ready", so kubelet retries after about 1 s, not 10-15 s.
	notReady string
}

// NewPolicy compiles the gate settings of cfg.
func NewPolicy(cfg *config.Config) (*Policy, error) {
	p := &Policy{mode: cfg.Mode, namespaces: map[string]bool{}, settle: cfg.SettleTime.Duration, notReady: "node network not ready"}
	if cfg.KubeletRetry == config.KubeletRetryFast {
		p.notReady = "node network is not ready"
	}
	for _, ns := range cfg.Exempt.Namespaces {
		p.namespaces[ns] = true
	}
	if s := cfg.Exempt.PodSelector; s != nil && (len(s.MatchLabels) > 0 || len(s.MatchExpressions) > 0) {
		sel, err := s.Selector()
		if err != nil {
			return nil, fmt.Errorf("exempt.podSelector: %w", err)
		}
		p.selector = sel
	}
	return p, nil
}

// Mode is the policy's mode.
func (p *Policy) Mode() config.Mode { return p.mode }

// Decide returns the decision for pod given the latest snapshot (nil before checks first ran).
func (p *Policy) Decide(pod Pod, snap *snapshot.Snapshot, now time.Time) Decision {
	switch {
	case p.mode == config.ModeOff:
		return Decision{Verdict: Admit, Why: "mode off"}
	case pod.HostNetwork:
		return Decision{Verdict: Admit, Why: "host network"}
	case p.namespaces[pod.Namespace]:
		return Decision{Verdict: Admit, Why: "exempt namespace"}
	case p.selector != nil && p.selector.Matches(labels.Set(pod.Labels)):
		return Decision{Verdict: Admit, Why: "exempt by podSelector"}
	}
	// kubelet retries a sandbox whose error contains "network is not ready"
	// (NetworkNotReadyErrorMsg) after about 1 s instead of its 10-15 s back-off: always while
	// sandbox-guard is starting (its first check comes within a second), and with kubeletRetry
	// fast for failing checks and the settle time too.
	var problem string
	var failing []snapshot.Result
	switch {
	case snap == nil:
		problem = "node network is not ready: not checked yet (sandbox-guard is starting)"
	case !snap.Ready():
		failing = snap.Failing()
		problem = p.notReady + ": " + describe(failing)
	case p.settle > 0 && now.Sub(snap.ReadySince) < p.settle:
		problem = fmt.Sprintf("%s: ready for only %s of the %s settle time", p.notReady,
			now.Sub(snap.ReadySince).Truncate(100*time.Millisecond), p.settle)
	default:
		return Decision{Verdict: Admit, Why: "ready"}
	}
	d := Decision{Verdict: Reject, Why: Message(pod, problem), Failing: failing}
	if p.mode == config.ModeWarn {
		d.Verdict = WouldReject
	}
	return d
}

// Message is the one-line rejection text: containerd returns it to kubelet, which shows it in
// the pod's FailedCreatePodSandBox event.
func Message(pod Pod, problem string) string {
	return fmt.Sprintf("sandbox-guard: pod %s not started: %s; kubelet will retry", oneLine(pod.String()), problem)
}

func describe(failing []snapshot.Result) string {
	parts := make([]string, len(failing))
	for i, r := range failing {
		s := r.Name + ": " + oneLine(r.Detail)
		if r.Hint != "" {
			s += " (" + oneLine(r.Hint) + ")"
		}
		parts[i] = s
	}
	return strings.Join(parts, "; ")
}

// oneLine keeps the message on one line whatever a check's detail holds.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

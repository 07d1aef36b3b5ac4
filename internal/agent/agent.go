// Package agent assembles sandbox-guard's background workers from one configuration and answers
// the RunPodSandbox hook from the state they publish. Data flows one way: workers -> snapshot
// -> hook.
package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/bridge"
	"github.com/sandbox-guard/sandbox-guard/internal/checks"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/containerd"
	"github.com/sandbox-guard/sandbox-guard/internal/ecr"
	"github.com/sandbox-guard/sandbox-guard/internal/gate"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
	"github.com/sandbox-guard/sandbox-guard/internal/metrics"
	"github.com/sandbox-guard/sandbox-guard/internal/snapshot"
)

// Agent is one configured instance of sandbox-guard.
type Agent struct {
	cfg    *config.Config
	log    logrus.FieldLogger
	policy *gate.Policy
	store  snapshot.Store
	runner *checks.Runner
	now    func() time.Time

	ecr     *ecr.Provider
	images  *containerd.Client
	metrics *metrics.Metrics // nil: metrics off
	keeper  atomic.Pointer[keeper.Keeper]
	bridge  atomic.Pointer[bridgeRun]
	// bridgeRunning is false for `check`, which inspects the bridge's files without writing.
	bridgeRunning atomic.Bool

	mu     sync.Mutex // guards images, which the keeper's start sets in the background
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// New builds an agent; nothing runs until Start.
func New(cfg *config.Config, log logrus.FieldLogger) (*Agent, error) {
	policy, err := gate.NewPolicy(cfg)
	if err != nil {
		return nil, err
	}
	built, err := checks.Build(cfg.EffectiveChecks(), checks.Deps{})
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log, policy: policy, now: time.Now}
	a.ecr = newECRProvider(cfg, a)
	list := built.Checks
	if cfg.SandboxImage != "" || len(cfg.PinImages) > 0 {
		list = append(list, checks.Check{Name: "images", Kind: "image", Informational: true, Prober: imagesProber{a},
			Hint: "sandbox-guard's image keeper repairs this"})
		if cfg.ECR.CredentialBridge {
			list = append(list, checks.Check{Name: "credential-bridge", Kind: "bridge", Informational: true, Prober: bridgeProber{a}})
		}
	}
	a.runner = checks.NewRunner(list, &a.store, checks.Options{
		WatchDirs:  built.WatchDirs,
		Interval:   cfg.Refresh.Interval.Duration,
		MaxBackoff: cfg.Refresh.MaxBackoff.Duration,
		Timeout:    cfg.Refresh.Timeout.Duration,
		Log:        log,
		OnRefresh:  func(s *snapshot.Snapshot) { a.metrics.ObserveSnapshot(s) },
	})
	return a, nil
}

// SetMetrics makes the agent report to m; call it before Start.
func (a *Agent) SetMetrics(m *metrics.Metrics) {
	a.metrics = m
	m.WatchECR(func() (uint64, uint64) {
		st := a.ecr.Stats()
		return st.Fetches, st.Errors
	})
}

// ContainerdReachable reports whether containerd answers (for /readyz).
func (a *Agent) ContainerdReachable(ctx context.Context) error {
	c := a.containerdClient()
	if c == nil {
		return errors.New("image keeper not started yet")
	}
	return c.Ping(ctx)
}

// Start runs the background workers until Stop or ctx ends. It does not wait for them, so the
// NRI handshake is never delayed.
func (a *Agent) Start(ctx context.Context) {
	ctx, a.cancel = context.WithCancel(ctx)
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		a.runner.Run(ctx)
	}()
	go func() {
		defer a.wg.Done()
		a.runImages(ctx)
	}()
}

// Stop ends the background workers and waits for them.
func (a *Agent) Stop() {
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	if c := a.containerdClient(); c != nil {
		_ = c.Close()
	}
}

// CheckNow runs every check once and returns the snapshot (the `check` command). Images are
// inspected, not repaired.
func (a *Agent) CheckNow(ctx context.Context) *snapshot.Snapshot {
	if a.cfg.SandboxImage != "" || len(a.cfg.PinImages) > 0 {
		if k, info, err := a.buildKeeper(ctx); err != nil {
			a.log.WithError(err).Error("cannot resolve the images to keep")
		} else {
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			k.InspectAll(ictx)
			cancel()
			a.keeper.Store(k)
			if a.cfg.ECR.CredentialBridge {
				p := a.planBridge(info, k.Targets())
				a.bridge.Store(&bridgeRun{plan: p, b: &bridge.Bridge{Dir: p.dir, Hosts: p.hosts}})
			}
			defer a.containerdClient().Close()
		}
	}
	return a.runner.Refresh(ctx)
}

// Admit is the RunPodSandbox decision: one atomic load, a pure decision, a log line.
func (a *Agent) Admit(_ context.Context, pod gate.Pod) error {
	start := time.Now()
	d := a.policy.Decide(pod, a.store.Load(), a.now())
	var failing []string
	for _, r := range d.Failing {
		failing = append(failing, r.Name)
	}
	defer func() { a.metrics.ObservePod(d.Verdict.String(), failing, time.Since(start)) }()
	switch d.Verdict {
	case gate.Reject:
		a.runner.Kick()
		a.log.WithFields(logrus.Fields{"pod": pod.String(), "verdict": "reject", "checks": strings.Join(failing, ",")}).Warn(d.Why)
		return errors.New(d.Why)
	case gate.WouldReject:
		a.runner.Kick()
		a.log.WithFields(logrus.Fields{"pod": pod.String(), "verdict": "would-reject", "checks": strings.Join(failing, ",")}).
			Warn("warn mode, admitted; enforce would reject: " + d.Why)
	default:
		// Most pods land here: build the log entry only when someone reads debug lines.
		if l, ok := a.log.(*logrus.Logger); !ok || l.IsLevelEnabled(logrus.DebugLevel) {
			a.log.WithFields(logrus.Fields{"pod": pod.String(), "verdict": "admit", "reason": d.Why}).Debug("pod admitted")
		}
	}
	return nil
}

// Describe is a one-line summary of the configuration for the start-up log.
func (a *Agent) Describe() string {
	var names []string
	for _, c := range a.cfg.EffectiveChecks() {
		names = append(names, c.Name)
	}
	return fmt.Sprintf("mode %s, preset %s, checks [%s]", a.cfg.Mode, a.cfg.Preset, strings.Join(names, ", "))
}

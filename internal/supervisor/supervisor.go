// Package supervisor is sandbox-guard's composition root. It turns one configuration into a
// running generation of workers (the check runner behind the hook, then, once the plan is
// resolved, the image keeper and the credential bridge), replaces the generation when the
// configuration changes, answers the hook through the current one, and assembles the status
// that `check`, the metrics and /readyz read. plugin/ only parses flags and maps errors to exit
// codes.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"

	"github.com/sandbox-guard/sandbox-guard/internal/backoff"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/gate"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
	"github.com/sandbox-guard/sandbox-guard/internal/metrics"
)

// ErrConfig marks a configuration that cannot be built (exit code 2 for the commands).
var ErrConfig = errors.New("configuration")

// Runtime is the container runtime as NRI's Configure (or, for the commands, containerd's
// version API) names it; its version decides how containerd's configuration is read.
type Runtime struct{ Name, Version string }

// String is "containerd v2.3.7", or "" when unknown.
func (r Runtime) String() string { return strings.TrimSpace(r.Name + " " + r.Version) }

// NRI is what the supervisor reads of the NRI connection (for /readyz and the metrics).
type NRI interface {
	Connected() bool
	Connects() int64
	// StandingBy reports whether an external plugin stands by for a pre-registered one, and why.
	StandingBy() (bool, string)
}

// Supervisor owns the running configuration of one sandbox-guard process.
type Supervisor struct {
	version string

	mu  sync.Mutex                      // serialises Apply, Off and Stop
	gen atomic.Pointer[generation]      // nil: gate off, every pod admitted
	nri atomic.Pointer[nriBox]          // set once the NRI plugin exists
	m   atomic.Pointer[metrics.Metrics] // one per process, created by the first configuration that wants it
	srv *metrics.Server                 // its server (guarded by mu); nil when not listening
	// logDrops counts log lines the asynchronous log output dropped; nil: none counted.
	logDrops func() uint64
}

type nriBox struct{ NRI }

// New returns a supervisor with the gate off until Apply. logDrops, when set, counts the log
// lines dropped by a stalled log output (a metric).
func New(version string, logDrops func() uint64) *Supervisor {
	return &Supervisor{version: version, logDrops: logDrops}
}

// SetNRI tells the supervisor about the NRI plugin, for /readyz and the metrics.
func (s *Supervisor) SetNRI(n NRI) { s.nri.Store(&nriBox{n}) }

// NRIConnected hears when the NRI plugin connects to or loses containerd.
func (s *Supervisor) NRIConnected(connected bool) { s.m.Load().SetNRIConnected(connected) }

// NRIStandingBy hears when the external plugin starts or stops standing by for a pre-registered
// sandbox-guard. Standing by, it runs nothing: the workers stop (they start again at the next
// connection, from a cold snapshot, which refuses pods in enforce mode until the checks ran),
// so two keepers and bridges never work on one node's images, state directory and hosts.toml.
func (s *Supervisor) NRIStandingBy(standingBy bool) {
	s.m.Load().SetStandingBy(standingBy)
	if standingBy {
		s.Off()
	}
}

// Apply replaces the running configuration with cfg, for the runtime rt. The new generation's
// workers run until the next Apply, Off or Stop, or until ctx ends, so ctx must be the
// process's, not a request's. An error (a configuration that cannot be built) leaves the gate
// off.
func (s *Supervisor) Apply(ctx context.Context, cfg *config.Config, rt Runtime) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyLocked(ctx, cfg, rt)
}

// Connected applies cfg when nothing runs yet or containerd came back as another version
// (upgraded while the external plugin waited); a reconnect to the same containerd keeps the
// running generation and its warm snapshot.
func (s *Supervisor) Connected(ctx context.Context, cfg *config.Config, rt Runtime) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.gen.Load(); g != nil && g.cfg == cfg && g.runtime == rt {
		return nil
	}
	if g := s.gen.Load(); g != nil {
		log.G(ctx).WithFields(map[string]any{"was": g.runtime.String(), "now": rt.String()}).Info("container runtime changed: re-reading its configuration")
	}
	return s.applyLocked(ctx, cfg, rt)
}

func (s *Supervisor) applyLocked(ctx context.Context, cfg *config.Config, rt Runtime) error {
	for _, w := range cfg.Warnings() {
		log.G(ctx).Warn(w)
	}
	s.startMetrics(ctx, cfg)
	g, err := newGeneration(ctx, cfg, rt, s.m.Load())
	if err != nil {
		s.stopLocked()
		return err
	}
	s.stopLocked()
	g.start(ctx)
	s.gen.Store(g)
	return nil
}

// Off turns the gate off (every pod admitted) and stops the workers.
func (s *Supervisor) Off() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// Stop ends the workers and waits for them.
func (s *Supervisor) Stop() { s.Off() }

func (s *Supervisor) stopLocked() {
	if g := s.gen.Swap(nil); g != nil {
		g.stop()
	}
}

// Admit answers RunPodSandbox through the current generation's hook; with the gate off it
// admits.
func (s *Supervisor) Admit(ctx context.Context, pod gate.Pod) error {
	g := s.gen.Load()
	if g == nil {
		return nil
	}
	return g.hook.Admit(ctx, pod)
}

// Status is the current generation's status; the zero Status while the gate is off.
func (s *Supervisor) Status() Status {
	g := s.gen.Load()
	if g == nil {
		return Status{}
	}
	return g.status()
}

// NRIConnected reports whether the NRI plugin is registered with containerd (for /readyz).
func (s *Supervisor) nriConnected() bool {
	n := s.nri.Load()
	return n != nil && n.Connected()
}

// standingBy reports whether the NRI plugin stands by for a pre-registered one (for /readyz).
func (s *Supervisor) standingBy() (bool, string) {
	if n := s.nri.Load(); n != nil {
		return n.StandingBy()
	}
	return false, ""
}

// ContainerdReachable reports whether containerd answers (for /readyz).
func (s *Supervisor) ContainerdReachable(ctx context.Context) error {
	g := s.gen.Load()
	if g == nil {
		return errors.New("gate off: no configuration running")
	}
	st := g.images.Load()
	switch {
	case st == nil:
		return errKeeperNotStarted
	case st.client == nil:
		return fmt.Errorf("%w: %w", errKeeperNotStarted, st.err)
	}
	return st.client.Ping(ctx)
}

// Check runs every check of cfg once and inspects its images without repairing them (the
// `check` command).
func Check(ctx context.Context, cfg *config.Config) (Status, error) {
	g, err := newGeneration(ctx, cfg, Runtime{}, nil)
	if err != nil {
		return Status{}, err
	}
	return g.inspect(ctx), nil
}

// Ensure makes every image of cfg present and pinned once (the `ensure` command).
func Ensure(ctx context.Context, cfg *config.Config) ([]keeper.Status, error) {
	g, err := newGeneration(ctx, cfg, Runtime{}, nil)
	if err != nil {
		return nil, err
	}
	return g.ensure(ctx)
}

// Describe is a one-line summary of cfg for the start-up log.
func Describe(cfg *config.Config) string {
	var names []string
	for _, c := range cfg.EffectiveChecks() {
		names = append(names, c.Name)
	}
	return fmt.Sprintf("mode %s, preset %s, checks [%s]", cfg.Mode, cfg.Preset, strings.Join(names, ", "))
}

// Serve starts the metrics and health server of cfg now, before any configuration runs (the
// external plugin's liveness probe must answer while it waits for containerd).
func (s *Supervisor) Serve(ctx context.Context, cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.startMetrics(ctx, cfg)
}

// startMetrics creates the metrics and starts their server on the first configuration that has
// an address; later configurations keep both (one listener per process).
func (s *Supervisor) startMetrics(ctx context.Context, cfg *config.Config) {
	if s.m.Load() != nil || cfg.Metrics.Address == "" {
		return
	}
	m := metrics.New()
	m.SetBuildInfo(s.version)
	m.SetNRIConnected(s.nriConnected())
	standing, _ := s.standingBy()
	m.SetStandingBy(standing)
	m.WatchChecks(func() ([]metrics.Check, bool) {
		if g := s.gen.Load(); g != nil {
			return metricChecks(g.store.Load())
		}
		return nil, false
	})
	m.WatchImages(func() []metrics.Image {
		if g := s.gen.Load(); g != nil {
			if st := g.images.Load(); st != nil && st.keeper != nil {
				return metricImages(st.keeper.Status())
			}
		}
		return nil
	})
	m.WatchBridge(func() []metrics.BridgeHost {
		if g := s.gen.Load(); g != nil {
			return metricBridge(g.bridgeStatus(g.images.Load()), time.Now())
		}
		return nil
	})
	m.WatchECR(func() (uint64, uint64) {
		if g := s.gen.Load(); g != nil {
			st := g.ecr.Stats()
			return st.Fetches, st.Errors
		}
		return 0, 0
	})
	m.WatchLogDrops(s.logDrops)
	m.WatchNRIConnects(func() int64 {
		if n := s.nri.Load(); n != nil {
			return n.Connects()
		}
		return 0
	})
	s.m.Store(m)
	srv := metrics.NewServer(cfg.Metrics.Address, m, health{s})
	if err := srv.Start(ctx); err != nil {
		// Another sandbox-guard on the port: logged, never fatal, the gate matters more. A
		// pre-registered plugin and the DaemonSet's share the node's loopback; retried, so that
		// whichever outlives the other serves the probes (a DaemonSet pod whose liveness probe
		// finds nothing after it took over would be restarted, leaving the node ungated).
		log.G(ctx).WithError(err).Error("metrics and health server not started; retrying every few seconds")
		go s.retryMetrics(ctx, srv)
		return
	}
	s.srv = srv
}

// retryMetrics starts srv once its address is free, until ctx ends.
func (s *Supervisor) retryMetrics(ctx context.Context, srv *metrics.Server) {
	err := backoff.Retry(ctx, backoff.Policy{Initial: time.Second, Max: 5 * time.Second, Jitter: 0.2}, srv.Start, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	log.G(ctx).Info("metrics and health server started: its address is free now")
}

// health answers /readyz: connected to NRI and to containerd, or standing by.
type health struct{ s *Supervisor }

func (h health) NRIConnected() bool { return h.s.nriConnected() }

func (h health) StandingBy() (bool, string) { return h.s.standingBy() }

func (h health) ContainerdReachable(ctx context.Context) error { return h.s.ContainerdReachable(ctx) }

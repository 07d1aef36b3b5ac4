package supervisor

import (
	"context"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"

	"github.com/sandbox-guard/sandbox-guard/internal/backoff"
	"github.com/sandbox-guard/sandbox-guard/internal/bridge"
	"github.com/sandbox-guard/sandbox-guard/internal/checks"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/containerd"
	"github.com/sandbox-guard/sandbox-guard/internal/ecr"
	"github.com/sandbox-guard/sandbox-guard/internal/gate"
	"github.com/sandbox-guard/sandbox-guard/internal/hook"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
	"github.com/sandbox-guard/sandbox-guard/internal/metrics"
	"github.com/sandbox-guard/sandbox-guard/internal/snapshot"
)

// generation is one configuration's workers: the check runner publishing snapshots for the
// hook, and (once the plan is resolved in the background) the image keeper and the credential
// bridge. Reconfiguring replaces the whole generation.
type generation struct {
	cfg     *config.Config
	runtime Runtime // as NRI reported it; zero for `check` until containerd answers
	store   snapshot.Store
	runner  *checks.Runner
	hook    *hook.Hook
	ecr     *ecr.Provider
	metrics *metrics.Metrics // nil: metrics off
	region  keeper.RegionFunc

	// images is published by the images worker: why it cannot start yet (while it retries),
	// then the plan, keeper and bridge it runs.
	images atomic.Pointer[imagesState]

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// imagesState is what the images worker has published; replaced whole, never modified.
type imagesState struct {
	plan   *Plan              // nil while the plan cannot be resolved
	err    error              // why the plan cannot be resolved (retried with back-off)
	client *containerd.Client // dials lazily; shared by the keeper and /readyz
	keeper *keeper.Keeper
	bridge *bridge.Bridge // nil: the bridge is off or has nothing to write
	// running is false for `check`, which inspects the bridge's files without writing them.
	running bool
}

// newGeneration builds the workers of cfg; nothing runs until start. It does no I/O, so it is
// safe in NRI's Configure.
func newGeneration(ctx context.Context, cfg *config.Config, rt Runtime, m *metrics.Metrics) (*generation, error) {
	policy, err := gate.NewPolicy(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	built, err := checks.Build(cfg.EffectiveChecks(), checks.Deps{})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	g := &generation{
		cfg:     cfg,
		runtime: rt,
		metrics: m,
		region:  func(ctx context.Context) (string, error) { return ecr.NodeRegion(ctx, nil) },
	}
	g.ecr = ecr.NewProvider(ecr.Options{
		Resolver: ecr.Resolver{Declared: cfg.ECR.Registries},
		Client: ecr.ClientConfig{
			BaseEndpoint: cfg.ECR.Endpoint, Endpoints: cfg.ECR.Endpoints,
			SharedConfigFiles: cfg.ECR.SharedConfigFiles, SharedCredentialsFiles: cfg.ECR.SharedCredentialsFiles,
			Profile: cfg.ECR.Profile, FIPS: cfg.EKS.FIPS,
		},
	})
	g.runner = checks.NewRunner(built.Checks, &g.store, checks.Options{
		WatchDirs:  built.WatchDirs,
		Interval:   cfg.Refresh.Interval.Duration,
		MaxBackoff: cfg.Refresh.MaxBackoff.Duration,
		Timeout:    cfg.Refresh.Timeout.Duration,
	})
	var observe hook.Observer
	if m != nil {
		observe = m
	}
	g.hook = hook.New(policy, &g.store, g.runner.Kick, observe, log.G(ctx))
	return g, nil
}

// imagesConfigured reports whether there is any image to keep.
func (g *generation) imagesConfigured() bool {
	return g.cfg.SandboxImage != "" || len(g.cfg.PinImages) > 0
}

// start runs the workers until stop or until ctx ends. It does not wait for them, so the NRI
// handshake is never delayed.
func (g *generation) start(ctx context.Context) {
	ctx, g.cancel = context.WithCancel(ctx)
	g.wg.Add(2)
	go func() {
		defer g.wg.Done()
		g.supervise(ctx, "checks", g.runner.Run)
	}()
	go func() {
		defer g.wg.Done()
		g.supervise(ctx, "images", g.runImages)
	}()
}

// supervise runs worker until ctx ends, restarting it with back-off when it panics: a crash
// must not end the process (containerd never restarts a pre-registered plugin, and every pod
// would then pass). Each panic is logged with its stack and counted.
func (g *generation) supervise(ctx context.Context, name string, worker func(context.Context)) {
	b := backoff.New(backoff.Policy{Initial: 100 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.2})
	for {
		if !g.runRecovering(ctx, name, worker) || ctx.Err() != nil {
			return
		}
		if !backoff.Sleep(ctx, b.Next()) {
			return
		}
	}
}

// runRecovering runs worker once and reports whether it panicked.
func (g *generation) runRecovering(ctx context.Context, name string, worker func(context.Context)) (panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			panicked = true
			log.G(ctx).WithFields(map[string]any{"worker": name, "panic": fmt.Sprint(r), "stack": string(debug.Stack())}).
				Error("worker panicked; restarting it")
			g.metrics.ObservePanic(name)
		}
	}()
	worker(ctx)
	return false
}

// stop ends the workers, waits for them and closes the containerd connection.
func (g *generation) stop() {
	if g.cancel != nil {
		g.cancel()
	}
	g.wg.Wait()
	g.closeClient()
}

func (g *generation) closeClient() {
	if st := g.images.Load(); st != nil && st.client != nil {
		_ = st.client.Close()
	}
}

// runImages resolves the plan (retrying with back-off: containerd's config may not be readable
// yet), then keeps the images present and runs the bridge until ctx ends.
func (g *generation) runImages(ctx context.Context) {
	var plan *Plan
	err := backoff.Retry(ctx, backoff.Policy{Initial: time.Second, Max: time.Minute, Jitter: 0.2}, func(ctx context.Context) (err error) {
		plan, err = Resolve(ctx, g.cfg, g.runtime, g.region)
		return err
	}, func(err error, next time.Duration) {
		g.images.Store(&imagesState{err: err})
		log.G(ctx).WithError(err).WithField("retry_in", next.Round(time.Millisecond).String()).Error("image keeper cannot start")
	})
	if err != nil {
		return
	}
	for _, n := range plan.Notes {
		log.G(ctx).Info(n)
	}
	st := g.workersFor(ctx, plan)
	st.running = true
	g.images.Store(st)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Also with no image to keep: entries written for an earlier configuration must go.
		g.supervise(ctx, "bridge", func(ctx context.Context) { g.runBridge(ctx, st) })
	}()
	if len(plan.Targets) > 0 {
		st.keeper.Run(ctx)
	}
	<-done
}

// workersFor builds the keeper and, when it is on and has something to write, the bridge of
// plan. Neither runs yet.
func (g *generation) workersFor(ctx context.Context, plan *Plan) *imagesState {
	client := containerd.New(containerd.Options{Address: g.cfg.Containerd.Address, Namespace: g.cfg.Containerd.Namespace,
		Snapshotter: g.cfg.Containerd.Snapshotter, HostsDirs: plan.HostsDirs})
	opts := keeper.Options{
		Targets:     plan.Targets,
		Credentials: keeper.ECRCredentials(g.ecr),
		Reconcile:   g.cfg.Keeper.ReconcileInterval.Duration,
		PullTimeout: g.cfg.Keeper.PullTimeout.Duration,
		Observe:     g.metrics.ObserveEnsure,
	}
	if g.cfg.Keeper.LocalCopy {
		opts.LocalCopies = &keeper.LocalCopies{Dir: g.cfg.StateDir}
	}
	st := &imagesState{plan: plan, client: client, keeper: keeper.New(client, opts)}
	if g.cfg.ECR.CredentialBridge && plan.Bridge.Dir != "" && len(plan.Bridge.Hosts) > 0 {
		st.bridge = &bridge.Bridge{Dir: plan.Bridge.Dir, Hosts: plan.Bridge.Hosts, Tokens: g.ecr, OnWrite: g.metrics.ObserveBridgeWrite,
			Declared: slices.Collect(maps.Keys(g.cfg.ECR.Registries)), Ledger: g.ledger()}
	}
	return st
}

// ledger is where the bridge records the files it writes.
func (g *generation) ledger() *bridge.Ledger { return &bridge.Ledger{StateDir: g.cfg.StateDir} }

// runBridge keeps the bridge's entries while it is on, and removes what it added when it is
// off; in both cases also from every file it wrote for an earlier configuration.
func (g *generation) runBridge(ctx context.Context, st *imagesState) {
	p := st.plan.Bridge
	logger := log.G(ctx)
	var planned []bridge.Entry
	for _, h := range p.Hosts {
		if p.Dir != "" {
			planned = append(planned, bridge.Entry{Dir: p.Dir, Host: h})
		}
	}
	if !g.cfg.ECR.CredentialBridge {
		// The planned hosts too: a version without the ledger may have written them.
		if bridge.PruneUntilDone(ctx, g.ledger(), nil, planned) {
			logger.WithField("dir", p.Dir).Debug("credential bridge off: no entry of it left in the hosts directory")
		}
		return
	}
	if p.Dir == "" || len(p.Hosts) == 0 {
		logger.WithField("why", p.Why).Warn("credential bridge on, but there is nothing to write: no ECR host among the kept images or no hosts directory")
		bridge.PruneUntilDone(ctx, g.ledger(), nil, nil)
		return
	}
	if !p.Effective {
		logger.WithFields(map[string]any{"why": p.Why, "fix": p.Fix}).Warn("credential bridge on, but containerd will not read it")
	}
	st.bridge.Run(ctx)
}

// inspect asks containerd its version, resolves the plan and looks at the images once without
// repairing anything, then runs every check (the `check` command). An unreachable containerd
// is one line within about a second, and the configuration is then read as its files say.
func (g *generation) inspect(ctx context.Context) Status {
	if g.imagesConfigured() {
		rt, unreachable := askRuntime(ctx, g.cfg)
		if unreachable == nil {
			g.runtime = rt
		}
		plan, err := Resolve(ctx, g.cfg, g.runtime, g.region)
		switch {
		case err != nil:
			g.images.Store(&imagesState{err: err})
		case unreachable != nil:
			g.images.Store(&imagesState{plan: plan, err: unreachable})
		default:
			st := g.workersFor(ctx, plan)
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st.keeper.InspectAll(ictx)
			cancel()
			if st.bridge != nil {
				for _, h := range st.bridge.Hosts {
					st.bridge.Inspect(h)
				}
			}
			g.images.Store(st)
		}
	}
	g.runner.Refresh(ctx)
	defer g.closeClient()
	return g.status()
}

// askRuntime asks containerd its version (`check` and `ensure` have no NRI connection to tell
// them), for at most a second.
func askRuntime(ctx context.Context, cfg *config.Config) (Runtime, error) {
	probe := containerd.New(containerd.Options{Address: cfg.Containerd.Address, Namespace: cfg.Containerd.Namespace})
	defer func() { _ = probe.Close() }()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	v, err := probe.Version(ctx)
	if err != nil {
		return Runtime{}, err
	}
	return Runtime{Name: "containerd", Version: v}, nil
}

// ensure makes every configured image present and pinned once (the `ensure` command).
func (g *generation) ensure(ctx context.Context) ([]keeper.Status, error) {
	rt, err := askRuntime(ctx, g.cfg)
	if err != nil {
		return nil, err
	}
	g.runtime = rt
	plan, err := Resolve(ctx, g.cfg, g.runtime, g.region)
	if err != nil {
		return nil, err
	}
	for _, n := range plan.Notes {
		log.G(ctx).Info(n)
	}
	st := g.workersFor(ctx, plan)
	defer func() { _ = st.client.Close() }()
	err = st.keeper.EnsureAll(ctx)
	return st.keeper.Status(), err
}

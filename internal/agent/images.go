package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/backoff"
	"github.com/sandbox-guard/sandbox-guard/internal/checks"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/containerd"
	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
	"github.com/sandbox-guard/sandbox-guard/internal/ecr"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
)

// newECRProvider builds the token provider from the ecr section.
func newECRProvider(cfg *config.Config, a *Agent) *ecr.Provider {
	return ecr.NewProvider(ecr.Options{
		Resolver: ecr.Resolver{Declared: cfg.ECR.Registries},
		Client: ecr.ClientConfig{
			BaseEndpoint: cfg.ECR.Endpoint, Endpoints: cfg.ECR.Endpoints,
			SharedConfigFiles: cfg.ECR.SharedConfigFiles, SharedCredentialsFiles: cfg.ECR.SharedCredentialsFiles,
			Profile: cfg.ECR.Profile, FIPS: cfg.EKS.FIPS,
		},
		Log: a.log,
	})
}

// readContainerdConfig reads containerd's configuration; a missing file is not an error
// (sandboxImage: auto then reports what it needs).
func readContainerdConfig(cfg *config.Config) (*containerdconfig.Info, error) {
	if cfg.Containerd.ConfigFile == "" {
		return nil, nil
	}
	info, err := containerdconfig.Load(cfg.Containerd.ConfigFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading containerd's configuration: %w", err)
	}
	return info, nil
}

// buildKeeper resolves the images to keep and builds a keeper for them. It reads files and may
// ask the instance metadata service, so it runs in the background, never in Configure.
// It also returns containerd's configuration, which the credential bridge needs too.
func (a *Agent) buildKeeper(ctx context.Context) (*keeper.Keeper, *containerdconfig.Info, error) {
	info, err := readContainerdConfig(a.cfg)
	if err != nil {
		return nil, nil, err
	}
	res, err := keeper.ResolveTargets(ctx, a.cfg, info, func(ctx context.Context) (string, error) { return ecr.NodeRegion(ctx, nil) })
	if err != nil {
		return nil, nil, err
	}
	for _, n := range res.Notes {
		a.log.Info(n)
	}
	images := containerd.New(containerd.Options{Address: a.cfg.Containerd.Address, Namespace: a.cfg.Containerd.Namespace,
		Snapshotter: a.cfg.Containerd.Snapshotter, HostsDirs: a.hostsDirs(info)})
	a.mu.Lock()
	a.images = images
	a.mu.Unlock()
	opts := keeper.Options{
		Targets:     res.Targets,
		Credentials: keeper.ECRCredentials(a.ecr),
		Reconcile:   a.cfg.Keeper.ReconcileInterval.Duration,
		PullTimeout: a.cfg.Keeper.PullTimeout.Duration,
		Log:         a.log,
		Observe:     a.metrics.ObserveEnsure,
	}
	if a.cfg.Keeper.LocalCopy {
		opts.LocalCopies = &keeper.LocalCopies{Dir: a.cfg.StateDir}
	}
	return keeper.New(images, opts), info, nil
}

// hostsDirs is where containerd reads hosts.toml: the configured override, else containerd's own
// registry config_path, in the order containerd tries them.
func (a *Agent) hostsDirs(info *containerdconfig.Info) []string {
	if dirs := containerd.SplitHostsDirs(a.cfg.Containerd.RegistryConfigPath); len(dirs) > 0 {
		return dirs
	}
	if info != nil {
		return info.RegistryConfigDirs
	}
	return nil
}

func (a *Agent) containerdClient() *containerd.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.images
}

// runImages keeps the configured images present until ctx ends.
func (a *Agent) runImages(ctx context.Context) {
	a.bridgeRunning.Store(true)
	var k *keeper.Keeper
	var info *containerdconfig.Info
	err := backoff.Retry(ctx, backoff.Policy{Initial: time.Second, Max: time.Minute, Jitter: 0.2}, func(ctx context.Context) (err error) {
		k, info, err = a.buildKeeper(ctx)
		return err
	}, func(err error, next time.Duration) {
		a.log.WithError(err).WithField("retry_in", next.Round(time.Millisecond).String()).Error("image keeper cannot start")
	})
	if err != nil {
		return
	}
	a.keeper.Store(k)
	if len(k.Targets()) == 0 {
		return
	}
	a.runner.Kick() // show the images in the snapshot at once
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.runBridge(ctx, info, k.Targets())
	}()
	k.Run(ctx)
	<-done
}

// EnsureImages ensures every configured image once (the `ensure` command).
func (a *Agent) EnsureImages(ctx context.Context) ([]keeper.Status, error) {
	k, _, err := a.buildKeeper(ctx)
	if err != nil {
		return nil, err
	}
	defer a.containerdClient().Close()
	err = k.EnsureAll(ctx)
	return k.Status(), err
}

// imagesProber reports the keeper's view in the snapshot; it never gates pods (the sandbox
// image is looked up before the hook runs) but `check` and the logs show it.
type imagesProber struct{ a *Agent }

func (p imagesProber) Probe(context.Context) checks.Outcome {
	k := p.a.keeper.Load()
	if k == nil {
		return checks.Outcome{Detail: "image keeper starting"}
	}
	sts := k.Status()
	p.a.metrics.ObserveImages(sts)
	if len(sts) == 0 {
		return checks.Outcome{OK: true, Detail: "no images configured"}
	}
	var parts []string
	ok := true
	for _, s := range sts {
		switch {
		case s.Present && s.Pinned:
			d := s.Name + " present and pinned"
			if s.Source != s.Name && s.Source != "" {
				d += " (from " + s.Source + ")"
			}
			parts = append(parts, d)
		case s.Checked.IsZero():
			ok = false
			parts = append(parts, s.Name+" not checked yet")
		default:
			ok = false
			parts = append(parts, s.LastError)
		}
	}
	return checks.Outcome{OK: ok, Detail: strings.Join(parts, "; ")}
}

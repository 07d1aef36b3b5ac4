package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/logging"
	"github.com/sandbox-guard/sandbox-guard/internal/standby"
	"github.com/sandbox-guard/sandbox-guard/internal/supervisor"
)

// cmdRun is the external plugin: configuration from a file, logs to stderr, reconnects to
// containerd after restarts.
func cmdRun(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", config.DefaultFile, "configuration file")
	socket := fs.String("nri-socket", api.DefaultSocketPath, "containerd's NRI socket")
	lock := fs.String("standby-lock", "", "stand by (do not connect) while a pre-registered sandbox-guard holds this lock file, "+
		"<its stateDir>/"+standby.FileName+" (it does while containerd runs it); take over within 100 ms once it is released")
	yield := fs.String("yield-to-preregistered", "", "deprecated, use --standby-lock: stand by while this file exists, "+
		"even when containerd does not run it or it died")
	if err := fs.Parse(args); err != nil {
		return exitBadInput
	}
	if *lock != "" && *yield != "" {
		fmt.Fprintln(stderr, "sandbox-guard: --standby-lock and the deprecated --yield-to-preregistered exclude each other; use --standby-lock")
		return exitBadInput
	}
	if *lock != "" && !filepath.IsAbs(*lock) {
		fmt.Fprintf(stderr, "sandbox-guard: --standby-lock %q: not an absolute path\n", *lock)
		return exitBadInput
	}
	cfg, err := config.LoadFile(*cfgFile)
	if err != nil {
		fmt.Fprintln(stderr, "sandbox-guard:", err)
		return exitBadInput
	}
	// The hook logs under NRI's node-wide lock: a stalled stderr pipe must not hold it.
	out := logging.NewAsync(stderr, 4096)
	defer out.Close(2 * time.Second)
	ctx = log.WithLogger(ctx, logrus.NewEntry(logging.New(cfg.Log, out)))
	err = supervisor.RunExternal(ctx, cfg, supervisor.External{Version: version, ConfigFile: *cfgFile, Socket: *socket,
		StandbyLock: *lock, YieldTo: *yield, LogDrops: out.Dropped})
	switch {
	case errors.Is(err, supervisor.ErrConfig):
		log.G(ctx).WithError(err).Error("cannot start")
		return exitBadInput
	case err != nil:
		log.G(ctx).WithError(err).Error("NRI plugin failed")
		return exitFailure
	}
	return exitOK
}

// runPreRegistered is the plugin containerd starts from its plugin_path.
func runPreRegistered(ctx context.Context) int {
	if err := supervisor.RunPreRegistered(ctx, version); err != nil {
		return exitFailure
	}
	return exitOK
}

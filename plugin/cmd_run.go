package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/agent"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/logging"
	"github.com/sandbox-guard/sandbox-guard/internal/metrics"
	"github.com/sandbox-guard/sandbox-guard/internal/nriplugin"
)

const (
	pluginName = "sandbox-guard"
	pluginIdx  = "10"
)

// cmdRun is the external plugin: configuration from a file, logs to stderr, reconnects to
// containerd after restarts.
func cmdRun(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", config.DefaultFile, "configuration file")
	socket := fs.String("nri-socket", api.DefaultSocketPath, "containerd's NRI socket")
	yield := fs.String("yield-to-preregistered", "", "if this file exists (a pre-registered sandbox-guard), do not gate: containerd already runs the plugin")
	if err := fs.Parse(args); err != nil {
		return exitBadInput
	}
	cfg, err := config.LoadFile(*cfgFile)
	if err != nil {
		fmt.Fprintln(stderr, "sandbox-guard:", err)
		return exitBadInput
	}
	log := logging.New(cfg.Log, stderr)
	a, err := agent.New(cfg, log)
	if err != nil {
		log.WithError(err).Error("cannot start")
		return exitBadInput
	}
	log.WithField("config", *cfgFile).Info("sandbox-guard " + version + " starting as an external plugin: " + a.Describe())
	m := newMetrics(cfg)
	a.SetMetrics(m)
	a.Start(ctx)
	defer a.Stop()
	opts := nriplugin.Options{SocketPath: *socket, Name: pluginName, Idx: pluginIdx, Log: log, OnConnection: m.SetNRIConnected}
	if *yield != "" {
		// Checked before every (re)connection: a plugin installed on the host while this pod runs
		// takes over at containerd's next restart, which is also when this one loses its connection.
		opts.StandBy = func() (bool, string) {
			if _, err := os.Stat(*yield); err == nil {
				return true, "a pre-registered sandbox-guard is installed at " + *yield + "; containerd runs it"
			}
			return false, ""
		}
	}
	p := nriplugin.New(opts)
	p.SetAdmitter(a)
	serveMetrics(ctx, cfg.Metrics.Address, m, p, a, log)
	if err := p.Run(ctx); err != nil {
		log.WithError(err).Error("NRI plugin failed")
		return exitFailure
	}
	log.Info("stopped")
	return exitOK
}

// runPreRegistered is the plugin containerd starts from its plugin_path. It must register and
// answer Configure whatever happens: containerd 1.7.11 exits when a pre-registered plugin
// fails to. So a bad configuration only turns the gate off and is logged, naming the key.
func runPreRegistered(ctx context.Context) int {
	deferred := &logging.Deferred{}
	log := logrus.New()
	log.SetOutput(deferred)
	var (
		mu      sync.Mutex
		current *agent.Agent
		logFile io.Closer
		served  bool
	)
	source := fmt.Sprintf("%s-%s.conf (from containerd's plugin_config_path)", os.Getenv(api.PluginIdxEnvVar), os.Getenv(api.PluginNameEnvVar))
	var p *nriplugin.Plugin
	configure := func(_ context.Context, text string) {
		mu.Lock()
		defer mu.Unlock()
		cfg, cfgErr := config.Parse([]byte(text), source)
		logCfg := config.Default().Log
		if cfgErr == nil {
			logCfg = cfg.Log
		} else if lenient := config.ParseLenient([]byte(text)).Log; lenient.File != "" && lenient.File[0] == '/' {
			logCfg.File = lenient.File // report the error where the operator looks for the log
		}
		if logFile == nil && logCfg.File != "" {
			f := logging.File(logCfg)
			if err := deferred.SetOutput(f); err == nil {
				logFile = f
			}
		}
		logging.Apply(log, logCfg)
		if current != nil {
			current.Stop()
			current = nil
		}
		if cfgErr != nil {
			log.WithError(cfgErr).Error("invalid configuration: gate off, every pod is admitted until it is fixed and containerd restarts the plugin")
			p.SetAdmitter(nil)
			return
		}
		a, err := agent.New(cfg, log)
		if err != nil {
			log.WithError(err).Error("cannot start: gate off, every pod is admitted")
			p.SetAdmitter(nil)
			return
		}
		log.Info("sandbox-guard " + version + " started by containerd: " + a.Describe())
		m := newMetrics(cfg)
		m.SetNRIConnected(true) // containerd started us over this connection; we exit with it
		a.SetMetrics(m)
		// The agent outlives this Configure call: it runs until the plugin exits.
		a.Start(context.WithoutCancel(ctx))
		current = a
		p.SetAdmitter(a)
		if !served {
			served = true // one server per process; a reconfiguration keeps it
			serveMetrics(ctx, cfg.Metrics.Address, m, p, a, log)
		}
	}
	p = nriplugin.New(nriplugin.Options{PreRegistered: true, Log: log, Configure: configure})
	err := p.Run(ctx)
	mu.Lock()
	if current != nil {
		current.Stop()
	}
	mu.Unlock()
	if err != nil {
		log.WithError(err).Error("NRI plugin failed")
	}
	if logFile != nil {
		logFile.Close()
	}
	if err != nil {
		return exitFailure
	}
	return exitOK
}

// newMetrics returns the metrics of a configuration; nil (every call a no-op) when turned off.
func newMetrics(cfg *config.Config) *metrics.Metrics {
	if cfg.Metrics.Address == "" {
		return nil
	}
	m := metrics.New()
	m.SetBuildInfo(version)
	return m
}

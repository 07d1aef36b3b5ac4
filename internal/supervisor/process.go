package supervisor

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/logging"
	"github.com/sandbox-guard/sandbox-guard/internal/nriplugin"
)

// asyncLogLines bounds the log lines queued for a slow log output; beyond it they are dropped
// and counted.
const asyncLogLines = 4096

// Plugin identity of an external plugin (a pre-registered one gets it from containerd).
const (
	PluginName = "sandbox-guard"
	PluginIdx  = "10"
)

// External configures the external plugin (e.g. a DaemonSet).
type External struct {
	Version    string
	LogDrops   func() uint64 // the log lines the stderr output dropped (a metric)
	ConfigFile string        // for the start-up log
	Socket     string        // containerd's NRI socket
	// YieldTo, when set, is the path of a pre-registered sandbox-guard: while it exists the
	// external plugin stands by, so two plugins never gate one node.
	YieldTo string
}

// RunExternal runs cfg as an external NRI plugin until ctx ends, reconnecting after containerd
// restarts. The logger travels in ctx. An error from cfg (e.g. a pod selector that does not
// compile) is returned before anything runs. The workers start at the first connection, when
// NRI names the containerd whose configuration they read, and again only if a reconnect finds
// another containerd version; the metrics and health server starts at once.
func RunExternal(ctx context.Context, cfg *config.Config, o External) error {
	if _, err := newGeneration(ctx, cfg, Runtime{}, nil); err != nil {
		return err
	}
	s := New(o.Version, o.LogDrops)
	p := nriplugin.New(ctx, nriplugin.Options{SocketPath: o.Socket, Name: PluginName, Idx: PluginIdx,
		OnConnection: s.NRIConnected, StandBy: standBy(o.YieldTo),
		Configure: func(_ context.Context, _, runtime, version string) {
			if err := s.Connected(ctx, cfg, Runtime{Name: runtime, Version: version}); err != nil {
				log.G(ctx).WithError(err).Error("cannot start: gate off, every pod is admitted")
			}
		}})
	s.SetNRI(p)
	p.SetAdmitter(s)
	s.Serve(ctx, cfg)
	defer s.Stop()
	log.G(ctx).WithField("config", o.ConfigFile).Info("sandbox-guard " + o.Version + " starting as an external plugin: " + Describe(cfg))
	if err := p.Run(ctx); err != nil {
		return fmt.Errorf("NRI plugin: %w", err)
	}
	log.G(ctx).Info("stopped")
	return nil
}

// standBy is checked before every (re)connection: a plugin installed on the host while this pod
// runs takes over at containerd's next restart, which is also when this one loses its connection.
func standBy(path string) func() (bool, string) {
	if path == "" {
		return nil
	}
	return func() (bool, string) {
		if _, err := os.Stat(path); err == nil {
			return true, "a pre-registered sandbox-guard is installed at " + path + "; containerd runs it"
		}
		return false, ""
	}
}

// RunPreRegistered runs the plugin containerd starts from its plugin_path, until containerd
// closes the connection. It must register and answer Configure whatever happens: containerd
// 1.7.11 exits when a pre-registered plugin fails to. So a bad configuration only turns the gate
// off and is logged, naming the key. Logs go to the configured file (containerd discards the
// plugin's stderr); until the configuration names it they are buffered.
func RunPreRegistered(ctx context.Context, version string) error {
	deferred := &logging.Deferred{}
	// The hook logs under NRI's node-wide lock: a hung log file must not hold it.
	out := logging.NewAsync(deferred, asyncLogLines)
	pr := &preRegistered{s: New(version, out.Dropped), version: version, deferred: deferred, log: logrus.New(),
		source: fmt.Sprintf("%s-%s.conf (from containerd's plugin_config_path)", os.Getenv(api.PluginIdxEnvVar), os.Getenv(api.PluginNameEnvVar))}
	pr.log.SetOutput(out)
	ctx = log.WithLogger(ctx, logrus.NewEntry(pr.log))
	p := nriplugin.New(ctx, nriplugin.Options{PreRegistered: true, OnConnection: pr.s.NRIConnected,
		// The workers outlive the Configure request: they run under the process's context.
		Configure: func(_ context.Context, text, runtime, version string) {
			pr.configure(ctx, text, Runtime{Name: runtime, Version: version})
		}})
	pr.s.SetNRI(p)
	p.SetAdmitter(pr.s)
	err := p.Run(ctx)
	pr.s.Stop()
	if err != nil {
		log.G(ctx).WithError(err).Error("NRI plugin failed")
	}
	out.Close(2 * time.Second) // before the file it writes to
	pr.closeLog()
	return err
}

// preRegistered applies the configuration texts containerd sends.
type preRegistered struct {
	s        *Supervisor
	version  string
	source   string
	log      *logrus.Logger
	deferred *logging.Deferred

	mu      sync.Mutex // Configure may come again after a reconnect
	logFile io.Closer
}

// configure parses text, points the log at its file (once) and applies it; an invalid text turns
// the gate off, logged where the operator looks.
func (pr *preRegistered) configure(ctx context.Context, text string, rt Runtime) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	cfg, cfgErr := config.Parse([]byte(text), pr.source)
	logCfg := config.Default().Log
	if cfgErr == nil {
		logCfg = cfg.Log
	} else if lenient := config.ParseLenient([]byte(text)).Log; lenient.File != "" && lenient.File[0] == '/' {
		logCfg.File = lenient.File // report the error where the operator looks for the log
	}
	if pr.logFile == nil && logCfg.File != "" {
		f := logging.File(logCfg)
		if err := pr.deferred.SetOutput(f); err == nil {
			pr.logFile = f
		}
	}
	logging.Apply(pr.log, logCfg)
	if cfgErr == nil && strings.TrimSpace(text) == "" {
		// No configuration file: the shipped file says warn, so must its absence; enforcing
		// defaults nobody chose could refuse every pod on a node whose checks do not fit.
		cfg.Mode = config.ModeWarn
		log.G(ctx).Warn("no configuration from containerd (no " + pr.source + "): running the defaults in warn mode, " +
			"nothing is refused; install the configuration file and restart containerd to enforce")
	}
	if cfgErr != nil {
		pr.s.Off()
		log.G(ctx).WithError(cfgErr).Error("invalid configuration: gate off, every pod is admitted until it is fixed and containerd restarts the plugin")
		return
	}
	if err := pr.s.Apply(ctx, cfg, rt); err != nil {
		log.G(ctx).WithError(err).Error("cannot start: gate off, every pod is admitted")
		return
	}
	log.G(ctx).Info("sandbox-guard " + pr.version + " started by " + rt.String() + ": " + Describe(cfg))
}

func (pr *preRegistered) closeLog() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.logFile != nil {
		_ = pr.logFile.Close()
	}
}

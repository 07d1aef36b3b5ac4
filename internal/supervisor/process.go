package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/backoff"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/logging"
	"github.com/sandbox-guard/sandbox-guard/internal/nriplugin"
	"github.com/sandbox-guard/sandbox-guard/internal/standby"
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
	// StandbyLock, when set, is the stand-by lock of a pre-registered sandbox-guard
	// (<its stateDir>/preregistered.lock): while a process holds it, containerd runs that
	// plugin and this one stands by; once it is released (the plugin exited, crashed or was
	// killed) this one connects within StandbyRecheck, and it disconnects again when the lock
	// is taken again (containerd restarted the pre-registered plugin), so that one plugin gates.
	StandbyLock string
	// StandbyRecheck is how often the lock is probed (100 ms when zero).
	StandbyRecheck time.Duration
	// YieldTo (the deprecated --yield-to-preregistered) stands by while this file exists,
	// whether containerd runs it or not. Ignored when StandbyLock is set.
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
	standBy, recheck := o.standBy(ctx)
	p := nriplugin.New(ctx, nriplugin.Options{SocketPath: o.Socket, Name: PluginName, Idx: PluginIdx,
		OnConnection: s.NRIConnected, StandBy: standBy, StandByRecheck: recheck, OnStandBy: s.NRIStandingBy,
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

// standBy returns how the external plugin decides to stand by, and how often it asks.
func (o External) standBy(ctx context.Context) (func() (bool, string), time.Duration) {
	switch {
	case o.StandbyLock != "":
		recheck := o.StandbyRecheck
		if recheck <= 0 {
			recheck = 100 * time.Millisecond
		}
		return lockStandBy(o.StandbyLock), recheck
	case o.YieldTo != "":
		log.G(ctx).Warn("--yield-to-preregistered is deprecated: it stands by while " + o.YieldTo + " exists, even when containerd " +
			"does not run that plugin or after it died; use --standby-lock=<the pre-registered plugin's stateDir>/" + standby.FileName)
		return fileStandBy(o.YieldTo), 10 * time.Second
	}
	return nil, 0
}

// lockStandBy stands by while a process holds the pre-registered plugin's stand-by lock. When
// the lock cannot be probed it connects: two plugins gating is better than none.
func lockStandBy(path string) func() (bool, string) {
	return func() (bool, string) {
		h, err := standby.Probe(path)
		switch {
		case err != nil:
			return false, "cannot tell whether a pre-registered sandbox-guard holds " + path + " (" + err.Error() + "); gating"
		case h.Held && h.PID > 0:
			return true, fmt.Sprintf("pre-registered sandbox-guard holds %s (pid %d); containerd runs it", path, h.PID)
		case h.Held:
			return true, "pre-registered sandbox-guard holds " + path + "; containerd runs it"
		}
		return false, "no pre-registered sandbox-guard holds " + path
	}
}

// fileStandBy is the deprecated --yield-to-preregistered: it stands by while path exists.
func fileStandBy(path string) func() (bool, string) {
	return func() (bool, string) {
		if _, err := os.Stat(path); err == nil {
			return true, "a pre-registered sandbox-guard is installed at " + path + " (whether containerd runs it or not)"
		}
		return false, "no pre-registered sandbox-guard at " + path
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
		defaultStateDir: config.Default().StateDir,
		source:          fmt.Sprintf("%s-%s.conf (from containerd's plugin_config_path)", os.Getenv(api.PluginIdxEnvVar), os.Getenv(api.PluginNameEnvVar))}
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
	pr.releaseLock() // first: an external plugin standing by takes over at once
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
	// The stand-by lock, held while connected (see package standby), in the configuration's
	// stateDir or, when the configuration does not name a valid one, in defaultStateDir.
	defaultStateDir string
	lockPath        string // set once
	lock            *standby.Lock
	lockWait        context.CancelFunc // stops retrying to take the lock; nil when not retrying
	lockDone        chan struct{}      // closed when the retrying ends
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
	// Held whatever the configuration says (a bad one turns the gate off, loudly): containerd
	// runs this plugin, so an external one must not take over behind the operator's back.
	stateDir := pr.defaultStateDir
	switch {
	case strings.TrimSpace(text) == "":
	case cfgErr == nil:
		stateDir = cfg.StateDir
	default:
		if lenient := config.ParseLenient([]byte(text)).StateDir; filepath.IsAbs(lenient) && lenient != config.Default().StateDir {
			stateDir = lenient
		}
	}
	pr.holdLock(ctx, standby.Path(stateDir))
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

// holdLock takes the stand-by lock at path, once per process, for as long as the process is
// connected. Configure must answer at once, so when the lock is busy (the plugin of containerd's
// previous run still exiting, or an external plugin probing it at this instant) or cannot be
// taken, it is retried in the background. Call with pr.mu held.
func (pr *preRegistered) holdLock(ctx context.Context, path string) {
	if pr.lockPath != "" {
		return
	}
	pr.lockPath = path
	held := func() {
		log.G(ctx).Info("holding the stand-by lock " + path + " while connected: an external sandbox-guard started with --standby-lock=" +
			path + " stands by meanwhile")
	}
	l, err := standby.Hold(path)
	if err == nil {
		pr.lock = l
		held()
		return
	}
	if errors.Is(err, standby.ErrHeld) {
		log.G(ctx).WithError(err).Warn("stand-by lock busy; retrying")
	} else {
		log.G(ctx).WithError(err).Error("cannot take the stand-by lock; retrying: meanwhile an external sandbox-guard " +
			"started with --standby-lock does not stand by and gates this node too")
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	pr.lockWait, pr.lockDone = cancel, done
	go func() {
		defer close(done)
		err := backoff.Retry(ctx, backoff.Policy{Initial: 20 * time.Millisecond, Max: time.Second, Jitter: 0.2}, func(context.Context) error {
			l, err := standby.Hold(path)
			if err != nil {
				return err
			}
			pr.mu.Lock()
			pr.lock = l
			pr.mu.Unlock()
			return nil
		}, nil)
		if err == nil {
			held()
		}
	}()
}

// releaseLock gives the stand-by lock up (and stops trying to take it).
func (pr *preRegistered) releaseLock() {
	pr.mu.Lock()
	cancel, done := pr.lockWait, pr.lockDone
	pr.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if err := pr.lock.Release(); err != nil {
		pr.log.WithError(err).Warn("stand-by lock")
	}
	pr.lock = nil
}

func (pr *preRegistered) closeLog() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.logFile != nil {
		_ = pr.logFile.Close()
	}
}

// Package nriplugin connects sandbox-guard to containerd through NRI: the stub's lifecycle in
// both modes (started by containerd, or connecting from outside with reconnects) and the
// RunPodSandbox handler, which hands each pod to the gate.
package nriplugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/backoff"
	"github.com/sandbox-guard/sandbox-guard/internal/gate"
)

// Admitter decides whether a pod sandbox may start; a non-nil error rejects it and is what
// containerd returns to kubelet.
type Admitter interface {
	Admit(ctx context.Context, pod gate.Pod) error
}

// Options configure a Plugin.
type Options struct {
	// PreRegistered is true when containerd started the plugin (NRI_PLUGIN_SOCKET is set): name,
	// index and connection then come from the environment, and the plugin exits when containerd
	// closes the connection.
	PreRegistered bool
	// SocketPath, Name and Idx are used by an external plugin.
	SocketPath string
	Name       string
	Idx        string
	// Configure receives the configuration text containerd sends: the plugin's .conf file when
	// pre-registered, empty for an external plugin. It must return quickly and never fail the
	// handshake (containerd 1.7.11 exits when a pre-registered plugin fails to configure).
	// runtime and version name the container runtime ("containerd", "v2.3.7"): they decide how
	// containerd's own configuration is read.
	Configure func(ctx context.Context, config, runtime, version string)
	// Reconnect paces an external plugin's attempts to reach containerd.
	Reconnect backoff.Policy
	// OnConnection, when set, hears when the plugin connects to or loses containerd (metrics).
	OnConnection func(connected bool)
	// StandBy, when set, is asked before every connection attempt of an external plugin and
	// every StandByRecheck while it waits or is connected. While it reports true (a
	// pre-registered sandbox-guard holds its stand-by lock: containerd runs one already) the
	// plugin does not connect, and a connected plugin disconnects, so that one plugin gates the
	// node. why says what was found, for the log and /readyz.
	StandBy func() (standBy bool, why string)
	// StandByRecheck is how often StandBy is asked again (10 s by default).
	StandByRecheck time.Duration
	// OnStandBy, when set, hears when the plugin starts or stops standing by.
	OnStandBy func(standingBy bool)
}

// Plugin is the NRI plugin. Its handlers are the methods the stub discovers by interface.
type Plugin struct {
	opts      Options
	log       *logrus.Entry
	admitter  atomic.Pointer[admitterBox]
	connected atomic.Bool
	connects  atomic.Int64
	// standBy is what StandBy last reported while deciding whether to connect; nil before.
	standBy atomic.Pointer[standByState]
}

type standByState struct {
	yes bool
	why string
}

type admitterBox struct{ Admitter }

// The stub finds handlers by interface: a changed NRI signature must fail the build, not leave
// the plugin registered but never called.
var (
	_ stub.ConfigureInterface = (*Plugin)(nil)
	_ stub.RunPodInterface    = (*Plugin)(nil)
)

// New returns a plugin that admits every pod until SetAdmitter is called. It logs to ctx's
// logger.
func New(ctx context.Context, opts Options) *Plugin {
	if opts.StandByRecheck <= 0 {
		opts.StandByRecheck = 10 * time.Second
	}
	if opts.Reconnect.Initial == 0 {
		opts.Reconnect = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}
	}
	return &Plugin{opts: opts, log: log.G(ctx)}
}

// SetAdmitter installs the gate; nil admits every pod (gate off).
func (p *Plugin) SetAdmitter(a Admitter) {
	if a == nil {
		p.admitter.Store(nil)
		return
	}
	p.admitter.Store(&admitterBox{a})
}

func (p *Plugin) setConnected(c bool) {
	p.connected.Store(c)
	if p.opts.OnConnection != nil {
		p.opts.OnConnection(c)
	}
}

// Connected reports whether the plugin is registered with containerd right now.
func (p *Plugin) Connected() bool { return p.connected.Load() }

// StandingBy reports whether the plugin stands by (does not connect because a pre-registered
// sandbox-guard gates the node), and what StandBy last said.
func (p *Plugin) StandingBy() (bool, string) {
	if st := p.standBy.Load(); st != nil {
		return st.yes, st.why
	}
	return false, ""
}

// Connects counts successful registrations (reconnects are Connects-1).
func (p *Plugin) Connects() int64 { return p.connects.Load() }

// Configure is the NRI handshake's configuration step.
func (p *Plugin) Configure(ctx context.Context, config, runtime, version string) (stub.EventMask, error) {
	p.log.WithFields(logrus.Fields{"runtime": runtime, "version": version}).Info("connected to the container runtime")
	p.setConnected(true)
	p.connects.Add(1)
	if p.opts.Configure != nil {
		p.opts.Configure(ctx, config, runtime, version)
	}
	return api.EventMask(0), nil // 0: every event the plugin implements (RunPodSandbox)
}

// RunPodSandbox is called by containerd after the sandbox is created and before it is reported
// ready; an error makes containerd tear the sandbox down and fail the CRI call. It runs under
// NRI's node-wide lock with a short timeout, so it only reads state.
func (p *Plugin) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	box := p.admitter.Load()
	if box == nil {
		return nil
	}
	return box.Admit(ctx, PodFromNRI(pod))
}

// PodFromNRI extracts what the gate needs. A pod without a network namespace of its own runs
// in the host's network. A pod without a Linux section is treated as a pod-network pod (the
// gate applies), since nothing shows it uses the host's network.
func PodFromNRI(pod *api.PodSandbox) gate.Pod {
	if pod == nil {
		return gate.Pod{}
	}
	out := gate.Pod{Namespace: pod.GetNamespace(), Name: pod.GetName(), UID: pod.GetUid(), Labels: pod.GetLabels()}
	if linux := pod.GetLinux(); linux != nil {
		out.HostNetwork = true
		for _, ns := range linux.GetNamespaces() {
			if ns.GetType() == "network" {
				out.HostNetwork = false
			}
		}
	}
	return out
}

// Run connects to containerd and serves until ctx ends. A pre-registered plugin returns when
// containerd closes the connection; an external plugin reconnects with capped back-off, and
// stands by (disconnected) while StandBy says so.
func (p *Plugin) Run(ctx context.Context) error {
	if p.opts.PreRegistered {
		s, err := p.newStub()
		if err != nil {
			return err
		}
		err = s.Run(ctx)
		p.setConnected(false)
		if ctx.Err() != nil {
			return nil
		}
		p.log.WithError(err).Info("containerd closed the NRI connection; exiting")
		return nil
	}
	b := backoff.New(p.opts.Reconnect)
	for ctx.Err() == nil {
		if p.standingBy() {
			if !backoff.Sleep(ctx, p.opts.StandByRecheck) {
				return nil
			}
			continue
		}
		before := p.connects.Load()
		s, err := p.newStub()
		if err != nil {
			return err
		}
		runCtx, stepAside := context.WithCancel(ctx)
		watched := p.watchStandBy(runCtx, stepAside)
		err = s.Run(runCtx)
		stepAside()
		steppedAside := <-watched
		p.setConnected(false)
		if ctx.Err() != nil {
			return nil
		}
		if steppedAside {
			continue // standingBy logs why
		}
		if p.connects.Load() != before {
			b.Reset() // it was connected: start over with short delays
		}
		d := b.Next()
		if err == nil {
			err = errors.New("connection closed")
		}
		p.log.WithError(err).WithField("retry_in", d.Round(time.Millisecond).String()).
			Warn("not connected to containerd's NRI socket " + p.opts.SocketPath)
		if !backoff.Sleep(ctx, d) {
			return nil
		}
	}
	return nil
}

// standingBy asks StandBy whether to stand by, logs what changed and tells OnStandBy.
func (p *Plugin) standingBy() bool {
	if p.opts.StandBy == nil {
		return false
	}
	yes, why := p.opts.StandBy()
	prev := p.standBy.Swap(&standByState{yes: yes, why: why})
	switch {
	case yes && (prev == nil || !prev.yes || prev.why != why):
		p.log.Info("standing by: " + why)
	case !yes && prev != nil && prev.yes:
		p.log.Warn("taking over: " + why + "; connecting to containerd")
	case !yes && (prev == nil || prev.why != why):
		p.log.Info("not standing by: " + why)
	}
	if p.opts.OnStandBy != nil && (prev == nil || prev.yes != yes) {
		p.opts.OnStandBy(yes)
	}
	return yes
}

// watchStandBy asks StandBy every StandByRecheck while the plugin connects or is connected and
// calls stepAside when it says to stand by: a pre-registered sandbox-guard came back (containerd
// restarted it) while this one gated. The channel says whether it did, once ctx ends.
func (p *Plugin) watchStandBy(ctx context.Context, stepAside context.CancelFunc) <-chan bool {
	done := make(chan bool, 1)
	if p.opts.StandBy == nil {
		done <- false
		return done
	}
	go func() {
		for backoff.Sleep(ctx, p.opts.StandByRecheck) {
			if yes, why := p.opts.StandBy(); yes {
				p.log.Warn("a pre-registered sandbox-guard gates this node again (" + why + "): disconnecting from containerd, so that one plugin gates")
				stepAside()
				done <- true
				return
			}
		}
		done <- false
	}()
	return done
}

func (p *Plugin) newStub() (stub.Stub, error) {
	opts := []stub.Option{
		stub.WithLogger(nriLogger{p.log}),
		// A hook that times out fails the pod instead of admitting it, and the plugin stays
		// registered for the next one. Honoured by runtimes embedding nri >= v0.12.5 (no
		// containerd release yet: 2.4.2 embeds v0.12.3); older ones ignore it.
		stub.WithFailurePolicy(&api.FailurePolicy{FailRequest: true, KeepConnected: true}),
		stub.WithOnClose(func() {
			p.setConnected(false)
			p.log.Warn("NRI connection closed")
		}),
	}
	// Name and index of a pre-registered plugin come from the environment; setting them again
	// makes stub.New fail ("plugin ID already set"), which containerd 1.7.11 treats as fatal.
	if !p.opts.PreRegistered {
		opts = append(opts, stub.WithSocketPath(p.opts.SocketPath))
		if os.Getenv(api.PluginNameEnvVar) == "" && p.opts.Name != "" {
			opts = append(opts, stub.WithPluginName(p.opts.Name))
		}
		if os.Getenv(api.PluginIdxEnvVar) == "" && p.opts.Idx != "" {
			opts = append(opts, stub.WithPluginIdx(p.opts.Idx))
		}
	}
	s, err := stub.New(p, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating NRI stub: %w", err)
	}
	return s, nil
}

// nriLogger sends the NRI library's own log lines to our logger.
type nriLogger struct{ l logrus.FieldLogger }

func (n nriLogger) Debugf(_ context.Context, f string, a ...any) {
	n.l.WithField("from", "nri").Debugf(f, a...)
}
func (n nriLogger) Infof(_ context.Context, f string, a ...any) {
	n.l.WithField("from", "nri").Debugf(f, a...)
}
func (n nriLogger) Warnf(_ context.Context, f string, a ...any) {
	n.l.WithField("from", "nri").Warnf(f, a...)
}
func (n nriLogger) Errorf(_ context.Context, f string, a ...any) {
	n.l.WithField("from", "nri").Errorf(f, a...)
}

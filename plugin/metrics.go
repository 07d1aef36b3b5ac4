package main

import (
	"context"

	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/agent"
	"github.com/sandbox-guard/sandbox-guard/internal/metrics"
	"github.com/sandbox-guard/sandbox-guard/internal/nriplugin"
)

// health answers /readyz: connected to NRI and to containerd.
type health struct {
	plugin *nriplugin.Plugin
	agent  *agent.Agent
}

func (h health) NRIConnected() bool { return h.plugin.Connected() }

func (h health) ContainerdReachable(ctx context.Context) error {
	return h.agent.ContainerdReachable(ctx)
}

// serveMetrics starts the metrics and health server when an address is configured. A failure to
// listen (another sandbox-guard on the port) is logged, never fatal: the gate matters more.
func serveMetrics(ctx context.Context, addr string, m *metrics.Metrics, p *nriplugin.Plugin, a *agent.Agent, log logrus.FieldLogger) {
	if addr == "" {
		return
	}
	m.WatchNRIConnects(p.Connects)
	s := metrics.NewServer(addr, m, health{plugin: p, agent: a}, log)
	if err := s.Start(ctx); err != nil {
		log.WithError(err).Error("metrics and health server not started")
		return
	}
	log.WithField("address", s.Addr()).Info("serving /metrics, /healthz and /readyz")
}

package agent

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/distribution/reference"

	"github.com/sandbox-guard/sandbox-guard/internal/bridge"
	"github.com/sandbox-guard/sandbox-guard/internal/checks"
	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
	"github.com/sandbox-guard/sandbox-guard/internal/ecr"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
)

// bridgePlan is where the credential bridge writes and whether containerd will read it.
type bridgePlan struct {
	dir       string
	hosts     []string
	effective bool
	why, fix  string
}

// planBridge finds the ECR hosts of the kept images (the sandbox image's first) and the hosts
// directory containerd reads.
func (a *Agent) planBridge(info *containerdconfig.Info, targets []keeper.Target) bridgePlan {
	resolver := ecr.Resolver{Declared: a.cfg.ECR.Registries}
	var p bridgePlan
	seen := map[string]bool{}
	for _, t := range targets {
		named, err := reference.ParseNormalizedNamed(t.Name)
		if err != nil {
			continue
		}
		h := reference.Domain(named)
		if _, ok := resolver.Resolve(h); ok && !seen[h] {
			seen[h] = true
			p.hosts = append(p.hosts, h)
		}
	}
	if dirs := a.hostsDirs(info); len(dirs) > 0 {
		p.dir = dirs[0]
	}
	p.effective, p.why, p.fix = containerdconfig.BridgeEffective(info)
	if p.dir == "" {
		p.effective, p.why, p.fix = false, "containerd has no registry config_path, so it reads no hosts.toml", containerdconfig.FixSingleConfigDir
	}
	return p
}

// runBridge keeps the entries while the bridge is on, and removes what it added when it is off.
func (a *Agent) runBridge(ctx context.Context, info *containerdconfig.Info, targets []keeper.Target) {
	p := a.planBridge(info, targets)
	if p.dir == "" || len(p.hosts) == 0 {
		if a.cfg.ECR.CredentialBridge {
			a.log.WithField("why", p.why).Warn("credential bridge on, but there is nothing to write: no ECR host among the kept images or no hosts directory")
		}
		return
	}
	if !a.cfg.ECR.CredentialBridge {
		if err := bridge.Remove(p.dir, p.hosts); err != nil {
			a.log.WithError(err).Warn("credential bridge off: cannot remove its entries")
			return
		}
		a.log.WithField("dir", p.dir).Debug("credential bridge off: no entry of it left in the hosts directory")
		return
	}
	if !p.effective {
		a.log.WithFields(map[string]any{"why": p.why, "fix": p.fix}).Warn("credential bridge on, but containerd will not read it")
	}
	b := &bridge.Bridge{Dir: p.dir, Hosts: p.hosts, Tokens: a.ecr, Log: a.log, OnWrite: a.metrics.ObserveBridgeWrite}
	a.bridge.Store(&bridgeRun{plan: p, b: b})
	b.Run(ctx)
}

type bridgeRun struct {
	plan bridgePlan
	b    *bridge.Bridge
}

// bridgeProber shows the bridge in `check` and the snapshot; it never gates.
type bridgeProber struct{ a *Agent }

func (p bridgeProber) Probe(context.Context) checks.Outcome {
	run := p.a.bridge.Load()
	if run == nil {
		return checks.Outcome{Detail: "credential bridge starting"}
	}
	var parts []string
	ok := run.plan.effective
	for _, st := range run.b.State() {
		switch {
		case st.Err != "":
			ok = false
			parts = append(parts, st.Host+": "+st.Err)
		case st.Written.IsZero():
			if _, err := os.Stat(st.File); err == nil && !p.a.bridgeRunning.Load() {
				parts = append(parts, fmt.Sprintf("%s: %s present", st.Host, st.File))
			} else {
				ok = false
				parts = append(parts, fmt.Sprintf("%s: %s not written yet", st.Host, st.File))
			}
		default:
			parts = append(parts, fmt.Sprintf("%s: %s, token expires in %d min", st.Host, st.File, int(time.Until(st.ExpiresAt).Minutes())))
		}
	}
	if !run.plan.effective {
		parts = append(parts, "NOT effective: "+run.plan.why+"; fix: "+run.plan.fix)
	} else {
		parts = append(parts, "effective")
	}
	return checks.Outcome{OK: ok, Detail: strings.Join(parts, "; ")}
}

package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/bridge"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
	"github.com/sandbox-guard/sandbox-guard/internal/metrics"
	"github.com/sandbox-guard/sandbox-guard/internal/snapshot"
)

// Status is what the workers last published, read by `check`, the metrics and /readyz. The
// workers never push into it; readers assemble it when they ask.
type Status struct {
	// Checks is the latest snapshot the hook decides from; nil before the first refresh.
	Checks *snapshot.Snapshot
	// ImagesConfigured is false when there is no image to keep (no containerd or images row).
	ImagesConfigured bool
	// Runtime is the containerd the configuration was read for; zero when unknown.
	Runtime Runtime
	// ImagesErr is why the image keeper cannot start (retried with back-off); nil once started.
	ImagesErr error
	Plan      *Plan            // nil until resolved
	Images    []keeper.Status  // the keeper's view, in configuration order
	Bridge    *BridgeStatus    // nil while the bridge is off or not planned yet
	Now       func() time.Time // for ages; time.Now when nil
}

// BridgeStatus is the credential bridge's plan and what it last did per host.
type BridgeStatus struct {
	Planned bool // false until the image keeper's plan is resolved
	Plan    BridgePlan
	Hosts   []bridge.HostState
	// Running is false for `check`, which reads the files the running plugin wrote.
	Running bool
}

// Row is one line of `check`: a gating check from the snapshot, or an informational row (the
// images and the bridge) that is shown but never gates pods.
type Row struct {
	snapshot.Result
	Informational bool
}

// Ready reports whether every gating check passes.
func (s Status) Ready() bool { return s.Checks != nil && s.Checks.Ready() }

// Rows returns the checks in configuration order, then the images and bridge rows.
func (s Status) Rows() []Row {
	var rows []Row
	if s.Checks != nil {
		for _, r := range s.Checks.Results {
			rows = append(rows, Row{Result: r})
		}
	}
	if s.ImagesConfigured {
		rows = append(rows, s.containerdRow(), s.imagesRow())
		if s.Bridge != nil {
			rows = append(rows, s.bridgeRow())
		}
	}
	return rows
}

func (s Status) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// containerdRow says which containerd the configuration was read for, and how it was read.
func (s Status) containerdRow() Row {
	row := Row{Result: snapshot.Result{Name: "containerd", Kind: "runtime", Checked: s.now()}, Informational: true}
	version := s.Runtime.String()
	if version == "" {
		version = "version unknown"
	}
	switch {
	case s.Plan == nil:
		row.Detail = version + "; configuration not read yet"
	case s.Plan.Containerd == nil:
		row.OK, row.Detail = s.Runtime.Version != "", version+"; no configuration file (containerd's defaults)"
	default:
		info := s.Plan.Containerd
		how := "read as " + info.Line.String() + " (" + info.LineSource + ")"
		if info.LineAssumed {
			how = "read as " + info.Line.String() + ", assumed from " + info.LineSource
		}
		row.OK = !info.LineAssumed
		row.Detail = fmt.Sprintf("%s; configuration %s: %s", version, how, strings.Join(info.Files, ", "))
	}
	return row
}

func (s Status) imagesRow() Row {
	row := Row{Result: snapshot.Result{Name: "images", Kind: "image", Hint: "sandbox-guard's image keeper repairs this", Checked: s.now()},
		Informational: true}
	switch {
	case s.ImagesErr != nil:
		row.Detail = "image keeper cannot start: " + oneLine(s.ImagesErr.Error())
		return row
	case s.Plan == nil:
		row.Detail = "image keeper starting"
		return row
	case len(s.Images) == 0:
		row.OK, row.Detail = true, "no images configured"
		return row
	}
	var parts []string
	row.OK = true
	for _, st := range s.Images {
		switch {
		case st.Present && st.Pinned:
			d := st.Name + " present and pinned"
			if st.Source != st.Name && st.Source != "" {
				d += " (from " + st.Source + ")"
			}
			if st.CopyError != "" {
				d += "; local copy not kept: " + st.CopyError
			}
			parts = append(parts, d)
		case st.Checked.IsZero():
			row.OK = false
			parts = append(parts, st.Name+" not checked yet")
		default:
			row.OK = false
			parts = append(parts, st.LastError)
		}
		if st.Checked.Before(row.Checked) && !st.Checked.IsZero() {
			row.Checked = st.Checked
		}
	}
	row.Detail = strings.Join(parts, "; ")
	return row
}

func (s Status) bridgeRow() Row {
	b := s.Bridge
	row := Row{Result: snapshot.Result{Name: "credential-bridge", Kind: "bridge", Checked: s.now(), OK: b.Plan.Effective}, Informational: true}
	switch {
	case !b.Planned:
		row.OK, row.Detail = false, "credential bridge starting (waits for the image keeper's plan)"
		return row
	case b.Plan.Dir == "" || len(b.Plan.Hosts) == 0:
		row.OK, row.Detail = false, "nothing to write: no ECR host among the kept images or no hosts directory"
		if b.Plan.Why != "" {
			row.Detail += " (" + b.Plan.Why + ")"
		}
		return row
	}
	var parts []string
	for _, st := range b.Hosts {
		var d string
		switch {
		case st.Err != "":
			row.OK = false
			d = st.Host + ": " + st.Err
		case st.Written.IsZero():
			if _, err := os.Stat(st.File); err == nil && !b.Running {
				d = fmt.Sprintf("%s: %s present", st.Host, st.File)
			} else {
				row.OK = false
				d = fmt.Sprintf("%s: %s not written yet", st.Host, st.File)
			}
		case !s.now().Before(st.ExpiresAt):
			// Refreshed at half its lifetime, a token expires only when refreshing stalled; the
			// gauge is 0 then, and this row says why.
			row.OK = false
			d = fmt.Sprintf("%s: %s, token expired %d min ago", st.Host, st.File, int(s.now().Sub(st.ExpiresAt).Minutes()))
		default:
			d = fmt.Sprintf("%s: %s, token expires in %d min", st.Host, st.File, int(st.ExpiresAt.Sub(s.now()).Minutes()))
		}
		if st.Unrecorded != "" && st.Err == "" {
			d += " (not recorded, so it would stay behind if the host left the configuration: " + oneLine(st.Unrecorded) + ")"
		}
		parts = append(parts, d)
	}
	if !b.Plan.Effective {
		parts = append(parts, "NOT effective: "+b.Plan.Why+"; fix: "+b.Plan.Fix)
	} else {
		parts = append(parts, "effective")
	}
	row.Detail = strings.Join(parts, "; ")
	return row
}

// status assembles the generation's Status from what its workers published.
func (g *generation) status() Status {
	st := g.images.Load()
	s := Status{Checks: g.store.Load(), ImagesConfigured: g.imagesConfigured(), Runtime: g.runtime, Bridge: g.bridgeStatus(st)}
	if st == nil {
		return s
	}
	s.ImagesErr, s.Plan = st.err, st.plan
	if st.keeper != nil {
		s.Images = st.keeper.Status()
	}
	return s
}

// bridgeStatus is the bridge's part of the status, from what the images worker published
// (st, nil before it published anything); nil while the bridge is off.
func (g *generation) bridgeStatus(st *imagesState) *BridgeStatus {
	if !g.cfg.ECR.CredentialBridge {
		return nil
	}
	b := &BridgeStatus{}
	if st != nil && st.plan != nil {
		b.Planned, b.Plan, b.Running = true, st.plan.Bridge, st.running
		if st.bridge != nil {
			b.Hosts = st.bridge.State()
		}
	}
	return b
}

// errKeeperNotStarted answers /readyz before the keeper has a containerd client.
var errKeeperNotStarted = errors.New("image keeper not started yet")

// metricChecks converts the snapshot for the metrics (read at scrape time).
func metricChecks(s *snapshot.Snapshot) (checks []metrics.Check, ready bool) {
	if s == nil {
		return nil, false
	}
	checks = make([]metrics.Check, 0, len(s.Results))
	for _, r := range s.Results {
		checks = append(checks, metrics.Check{Name: r.Name, Kind: r.Kind, OK: r.OK, Took: r.Took})
	}
	return checks, s.Ready()
}

// metricImages converts the keeper's statuses for the metrics (read at scrape time).
func metricImages(sts []keeper.Status) []metrics.Image {
	out := make([]metrics.Image, 0, len(sts))
	for _, st := range sts {
		out = append(out, metrics.Image{Name: st.Name, Role: st.Role, Present: st.Present, Pinned: st.Pinned,
			LastRepair: st.LastRepair, Repairs: st.Repairs, CopyFailing: st.CopyError != ""})
	}
	return out
}

// metricBridge says, per ECR host, whether the credential bridge works (read at scrape time):
// containerd reads the hosts directory (the plan is effective) and the host's entry was written
// at the last refresh, without error, with a token that has not expired at now. No host while
// the bridge is off or its plan is not resolved yet, nor when no kept image is on an ECR host
// (nothing to alert on; the log warns once and check says so). With no hosts directory every
// host is 0: containerd reads no hosts.toml, so its pulls get no token.
func metricBridge(b *BridgeStatus, now time.Time) []metrics.BridgeHost {
	if b == nil || !b.Planned {
		return nil
	}
	if b.Plan.Dir == "" {
		out := make([]metrics.BridgeHost, 0, len(b.Plan.Hosts))
		for _, h := range b.Plan.Hosts {
			out = append(out, metrics.BridgeHost{Host: h})
		}
		return out
	}
	out := make([]metrics.BridgeHost, 0, len(b.Hosts))
	for _, st := range b.Hosts {
		ok := b.Plan.Effective && st.Err == "" && !st.Written.IsZero() && now.Before(st.ExpiresAt)
		out = append(out, metrics.BridgeHost{Host: st.Host, Effective: ok})
	}
	return out
}

// oneLine keeps multi-line errors (containerd's, AWS's) on one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

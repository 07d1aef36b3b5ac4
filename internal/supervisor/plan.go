package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/distribution/reference"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/containerd"
	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
	"github.com/sandbox-guard/sandbox-guard/internal/ecr"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
)

// Plan is what one configuration means on this node, resolved once: the images to keep, where
// containerd reads hosts.toml, and what the credential bridge would write. It is immutable.
type Plan struct {
	// Containerd is containerd's own configuration; nil when the file does not exist.
	Containerd *containerdconfig.Info
	Targets    []keeper.Target
	// HostsDirs is where containerd reads hosts.toml, in the order it tries them.
	HostsDirs []string
	Bridge    BridgePlan
	// Notes explain where the sandbox image's name came from (logged once).
	Notes []string
}

// BridgePlan is where the credential bridge writes and whether containerd will read it.
type BridgePlan struct {
	Dir       string   // the first hosts directory; empty: containerd reads none
	Hosts     []string // ECR hosts of the kept images, the sandbox image's first
	Effective bool
	Why, Fix  string // why it is not effective, and the one-line fix
}

// Resolve reads containerd's configuration and resolves the plan of cfg. It reads files and
// may ask the instance metadata service for the region, so it never runs in the hook or in
// Configure.
func Resolve(ctx context.Context, cfg *config.Config, rt Runtime, region keeper.RegionFunc) (*Plan, error) {
	info, err := readContainerdConfig(cfg, rt)
	if err != nil {
		return nil, err
	}
	res, err := keeper.ResolveTargets(ctx, cfg, info, region)
	if err != nil {
		return nil, err
	}
	p := &Plan{Containerd: info, Targets: res.Targets, HostsDirs: hostsDirs(cfg, info), Notes: res.Notes}
	if info != nil {
		p.Notes = append(p.Notes, info.Notes...)
	}
	p.Bridge = planBridge(cfg, info, p.HostsDirs, res.Targets)
	return p, nil
}

// readContainerdConfig reads containerd's configuration the way the running containerd reads it
// (its version decides how; unknown, the files' version lines do and Info says what was
// assumed); a missing file is not an error (sandboxImage: auto then says what it needs).
func readContainerdConfig(cfg *config.Config, rt Runtime) (*containerdconfig.Info, error) {
	if cfg.Containerd.ConfigFile == "" {
		return nil, nil
	}
	info, err := containerdconfig.LoadWithOptions(cfg.Containerd.ConfigFile, containerdconfig.Options{RuntimeVersion: rt.Version})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading containerd's configuration: %w", err)
	}
	return info, nil
}

// hostsDirs is where containerd reads hosts.toml: the configured override, else containerd's own
// registry config_path, in the order containerd tries them.
func hostsDirs(cfg *config.Config, info *containerdconfig.Info) []string {
	if dirs := containerd.SplitHostsDirs(cfg.Containerd.RegistryConfigPath); len(dirs) > 0 {
		return dirs
	}
	if info != nil {
		return info.RegistryConfigDirs
	}
	return nil
}

// planBridge finds the ECR hosts of the kept images (the sandbox image's first) and the hosts
// directory containerd reads.
func planBridge(cfg *config.Config, info *containerdconfig.Info, dirs []string, targets []keeper.Target) BridgePlan {
	resolver := ecr.Resolver{Declared: cfg.ECR.Registries}
	var p BridgePlan
	seen := map[string]bool{}
	for _, t := range targets {
		named, err := reference.ParseNormalizedNamed(t.Name)
		if err != nil {
			continue
		}
		h := reference.Domain(named)
		if _, ok := resolver.Resolve(h); ok && !seen[h] {
			seen[h] = true
			p.Hosts = append(p.Hosts, h)
		}
	}
	if len(dirs) > 0 {
		p.Dir = dirs[0]
	}
	p.Effective, p.Why, p.Fix = containerdconfig.BridgeEffective(info)
	if p.Dir == "" {
		p.Effective, p.Why, p.Fix = false, "containerd has no registry config_path, so it reads no hosts.toml", containerdconfig.FixSingleConfigDir
	}
	return p
}

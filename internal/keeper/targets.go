package keeper

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/distribution/reference"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/containerd"
	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
	"github.com/sandbox-guard/sandbox-guard/internal/ecr"
)

// Normalize returns ref the way CRI names it (docker.io/library/... for short names).
func Normalize(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("%q is not an image reference: %w", ref, err)
	}
	return named.String(), nil
}

// normalizeSource is Normalize for a fallback: an archive fallback stays as written.
func normalizeSource(src string) (string, error) {
	if a, ok, err := config.ParseArchiveSource(src); ok {
		if err != nil {
			return "", err
		}
		return a.String(), nil
	}
	return Normalize(src)
}

// Resolution explains where the sandbox image name came from, for logs and `check`.
type Resolution struct {
	Targets []Target
	Notes   []string
}

// RegionFunc finds the node's AWS region (instance metadata) for sandboxImage: eks.
type RegionFunc func(ctx context.Context) (string, error)

// ResolveTargets turns the configuration into targets. The sandbox image's *name* is always the
// one CRI looks up: an explicit sandboxImage, or (auto and eks) the one in containerd's own
// configuration. eks adds the EKS pause image of the node's region and the public copies as
// sources to fall back to, which is what rescues a node configured with the wrong region or
// account.
func ResolveTargets(ctx context.Context, cfg *config.Config, containerdInfo *containerdconfig.Info, region RegionFunc) (Resolution, error) {
	var res Resolution
	add := func(role, name string, fallbacks []string) error {
		n, err := Normalize(name)
		if err != nil {
			return err
		}
		t := Target{Name: n, Role: role, Sources: []string{n}}
		for _, f := range fallbacks {
			fn, err := normalizeSource(f)
			if err != nil {
				return err
			}
			if !slices.Contains(t.Sources, fn) {
				t.Sources = append(t.Sources, fn)
			}
		}
		res.Targets = append(res.Targets, t)
		return nil
	}
	switch mode := cfg.SandboxImage; mode {
	case "":
	case "auto", "eks":
		name := ""
		if containerdInfo != nil && containerdInfo.SandboxImage != "" {
			name = containerdInfo.SandboxImage
			res.Notes = append(res.Notes, fmt.Sprintf("sandbox image %s from containerd's configuration (%s)", name, orDefault(containerdInfo.SandboxImageFile, "containerd's default")))
		}
		fallbacks := cfg.SandboxImageFallbacks
		if mode == "eks" && (name == "" || len(fallbacks) == 0) {
			r := cfg.EKS.Region
			if r == "" {
				var err error
				if r, err = region(ctx); err != nil {
					return res, fmt.Errorf("sandboxImage: eks needs the node's region: set eks.region or allow instance metadata: %w", err)
				}
			}
			eksImage := ecr.PauseImage(r, cfg.EKS.FIPS, cfg.EKS.PauseVersion)
			if name == "" {
				name = eksImage
				res.Notes = append(res.Notes, "sandbox image "+name+" (EKS pause image of "+r+")")
			}
			if len(fallbacks) == 0 {
				fallbacks = append(append([]string{eksImage}, ecr.PauseFallbacks(cfg.EKS.PauseVersion)...), config.ArchivePrefix+ecr.PauseArchive)
			}
		}
		if name == "" {
			return res, errors.New("sandboxImage: auto needs containerd's configuration (containerd.configFile)")
		}
		if err := add("sandbox image", name, fallbacks); err != nil {
			return res, fmt.Errorf("sandboxImage: %w", err)
		}
	default:
		if err := add("sandbox image", mode, cfg.SandboxImageFallbacks); err != nil {
			return res, fmt.Errorf("sandboxImage: %w", err)
		}
		if containerdInfo != nil && containerdInfo.SandboxImage != "" {
			if n, _ := Normalize(containerdInfo.SandboxImage); n != res.Targets[0].Name {
				res.Notes = append(res.Notes, fmt.Sprintf("warning: sandboxImage %s differs from containerd's %s: CRI uses containerd's", res.Targets[0].Name, n))
			}
		}
	}
	for i, p := range cfg.PinImages {
		if err := add("pinned image", p.Image, p.Fallbacks); err != nil {
			return res, fmt.Errorf("pinImages[%d]: %w", i, err)
		}
	}
	return res, nil
}

// ECRCredentials gives an image the ECR token of its registry host when that host is ECR (or
// declared in ecr.registries), and nothing for other images. The containerd adapter asks it
// with the image's host and hands the answer to every host that challenges the pull, hosts.toml
// mirrors included, as CRI does with kubelet's credentials for the image.
func ECRCredentials(p *ecr.Provider) containerd.Credentials {
	return func(ctx context.Context, host string) (string, string, error) {
		c, err := p.Credentials(ctx, host)
		if errors.Is(err, ecr.ErrNotECR) {
			return "", "", nil
		}
		if err != nil {
			return "", "", err
		}
		return c.Username, c.Password, nil
	}
}

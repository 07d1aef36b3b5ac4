package containerd

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
)

// resolver returns the resolver for one pull of ref, built as CRI builds it for a pull with
// kubelet's credentials (containerd v2.2.9 internal/cri/server/images/image_pull.go):
//
//   - The hosts come from the registry hosts directory (CRI's registryHosts with a config_path:
//     config.ConfigureHosts over hostDirFromRoots), so <host>/hosts.toml applies exactly as for
//     CRI's own pull: [host] entries in file order, then server; ca, client, skip_verify,
//     capabilities, header and override_path of each entry.
//   - Credentials follow the image, not the host that asks. containerd's docker authorizer asks
//     its credentials function with the host that answered 401 (core/remotes/docker/authorizer.go
//     AddResponses: last.Request.URL.Host), which is a mirror's host when a [host] entry serves
//     the pull. CRI's function (GRPCCRIImageService.PullImage) answers every host with kubelet's
//     AuthConfig for the image, through ParseAuth, which withholds it only when the AuthConfig
//     names another ServerAddress (kubelet's and crictl's name none). So a mirror that challenges
//     gets the credentials of the image's registry: here creds for the reference's host, e.g. the
//     ECR token of the ECR host the image lives on.
func (c *Client) resolver(ctx context.Context, ref string, creds Credentials) (remotes.Resolver, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: not an image reference: %w", ref, err)
	}
	imageHost := reference.Domain(named)
	hosts := config.ConfigureHosts(ctx, config.HostOptions{
		HostDir: hostDirFromRoots(c.opts.HostsDirs),
		Credentials: func(string) (string, string, error) {
			if creds == nil {
				return "", "", nil
			}
			user, secret, err := creds(ctx, imageHost)
			if err != nil {
				return "", "", fmt.Errorf("credentials for %s: %w", imageHost, err)
			}
			return user, secret, nil
		},
	})
	return docker.NewResolver(docker.ResolverOptions{Hosts: hosts}), nil
}

// hostDirFromRoots finds a host's hosts.toml directory in the first root that has one, as CRI
// does with a config_path of several directories (v2.2.9 image_pull.go hostDirFromRoots): a root
// without one (errdefs.ErrNotFound) passes the question on to the next root.
func hostDirFromRoots(roots []string) func(string) (string, error) {
	return func(host string) (string, error) {
		for _, root := range roots {
			dir, err := config.HostDirFromRoot(root)(host)
			if err != nil && !errdefs.IsNotFound(err) {
				return "", fmt.Errorf("registry hosts directory %s for %s: %w", root, host, err)
			}
			if dir != "" {
				return dir, nil
			}
		}
		return "", nil
	}
}

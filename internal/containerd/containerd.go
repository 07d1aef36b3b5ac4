// Package containerd is sandbox-guard's adapter over the containerd v2 Go client: exactly the
// image operations the keeper needs, in one namespace, done the way CRI expects to find them.
// It connects lazily, so the plugin never waits for containerd (a pre-registered plugin starts
// before containerd's gRPC socket serves).
package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/containerd/typeurl/v2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Options say where containerd is and how CRI uses it.
type Options struct {
	Address     string
	Namespace   string   // k8s.io for CRI
	Snapshotter string   // CRI's snapshotter, overlayfs by default
	HostsDirs   []string // registry config_path: hosts.toml per host, tried in order
}

// Client talks to one containerd.
type Client struct {
	opts     Options
	platform platforms.MatchComparer

	mu sync.Mutex
	c  *containerd.Client
}

// New returns a client; nothing is dialled until the first call.
func New(opts Options) *Client {
	return &Client{opts: opts, platform: platforms.Default()}
}

// Close closes the connection, if any.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil
	}
	err := c.c.Close()
	c.c = nil
	return err
}

func (c *Client) client(ctx context.Context) (*containerd.Client, context.Context, error) {
	ctx = namespaces.WithNamespace(ctx, c.opts.Namespace)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		return c.c, ctx, nil
	}
	cl, err := containerd.New(c.opts.Address, containerd.WithDefaultNamespace(c.opts.Namespace), containerd.WithTimeout(5*time.Second))
	if err != nil {
		return nil, ctx, fmt.Errorf("connecting to containerd at %s: %w", c.opts.Address, err)
	}
	c.c = cl
	return cl, ctx, nil
}

// Image is an image record.
type Image struct {
	Name   string
	Target ocispec.Descriptor
	Labels map[string]string
}

// Get returns the record called name; ok is false when there is none.
func (c *Client) Get(ctx context.Context, name string) (Image, bool, error) {
	cl, ctx, err := c.client(ctx)
	if err != nil {
		return Image{}, false, err
	}
	img, err := cl.ImageService().Get(ctx, name)
	if errdefs.IsNotFound(err) {
		return Image{}, false, nil
	}
	if err != nil {
		return Image{}, false, fmt.Errorf("looking up image %s: %w", name, err)
	}
	return Image{Name: img.Name, Target: img.Target, Labels: img.Labels}, true, nil
}

// Usable reports whether the content of target is complete for this platform and unpacked into
// the snapshotter, and returns the image config's digest (CRI's image ID).
func (c *Client) Usable(ctx context.Context, name string) (complete, unpacked bool, configDigest string, err error) {
	cl, ctx, err := c.client(ctx)
	if err != nil {
		return false, false, "", err
	}
	rec, err := cl.ImageService().Get(ctx, name)
	if err != nil {
		return false, false, "", fmt.Errorf("looking up image %s: %w", name, err)
	}
	complete, _, _, _, err = images.Check(ctx, cl.ContentStore(), rec.Target, c.platform)
	if err != nil {
		return false, false, "", fmt.Errorf("checking content of %s: %w", name, err)
	}
	if !complete {
		return false, false, "", nil
	}
	img := containerd.NewImageWithPlatform(cl, rec, c.platform)
	cfg, err := img.Config(ctx)
	if err != nil {
		return true, false, "", fmt.Errorf("reading config of %s: %w", name, err)
	}
	unpacked, err = img.IsUnpacked(ctx, c.opts.Snapshotter)
	if err != nil {
		return true, false, "", fmt.Errorf("checking %s is unpacked: %w", name, err)
	}
	return true, unpacked, cfg.Digest.String(), nil
}

// Credentials returns the credentials for pulling an image from the registry host its
// reference names (the image's host, as kubelet looks credentials up by image); empty strings
// mean anonymous. A pull hands them to every host that challenges it, mirrors included: see
// resolver.
type Credentials func(ctx context.Context, host string) (user, secret string, err error)

// Pull fetches every blob of ref for this platform (even layers whose snapshots already exist,
// so the content is complete and can be exported), stores the record under ref with labels
// (given in full: containerd replaces a record's labels on re-pull), and unpacks it. It honours
// the registry hosts directory the way CRI does, so mirrors keep working (see resolver).
func (c *Client) Pull(ctx context.Context, ref string, creds Credentials, labels map[string]string) (Image, error) {
	cl, ctx, err := c.client(ctx)
	if err != nil {
		return Image{}, err
	}
	resolver, err := c.resolver(ctx, ref, creds)
	if err != nil {
		return Image{}, err
	}
	img, err := cl.Fetch(ctx, ref, containerd.WithResolver(resolver), containerd.WithPlatformMatcher(c.platform), containerd.WithPullLabels(labels))
	if err != nil {
		return Image{}, err
	}
	if err := containerd.NewImageWithPlatform(cl, img, c.platform).Unpack(ctx, c.opts.Snapshotter); err != nil {
		return Image{}, fmt.Errorf("unpacking %s into %s: %w", ref, c.opts.Snapshotter, err)
	}
	return Image{Name: img.Name, Target: img.Target, Labels: img.Labels}, nil
}

// Put creates or replaces the record name -> target with exactly labels.
func (c *Client) Put(ctx context.Context, name string, target ocispec.Descriptor, labels map[string]string) error {
	cl, ctx, err := c.client(ctx)
	if err != nil {
		return err
	}
	is := cl.ImageService()
	img := images.Image{Name: name, Target: target, Labels: labels}
	if _, err := is.Create(ctx, img); err == nil {
		return nil
	} else if !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("creating image record %s: %w", name, err)
	}
	if _, err := is.Update(ctx, img, "target", "labels"); err != nil {
		return fmt.Errorf("updating image record %s: %w", name, err)
	}
	return nil
}

// SetLabels sets (only) the given labels on the record name.
func (c *Client) SetLabels(ctx context.Context, name string, labels map[string]string) error {
	cl, ctx, err := c.client(ctx)
	if err != nil {
		return err
	}
	img := images.Image{Name: name, Labels: labels}
	var paths []string
	for k := range labels {
		paths = append(paths, "labels."+k)
	}
	if _, err := cl.ImageService().Update(ctx, img, paths...); err != nil {
		return fmt.Errorf("labelling image %s: %w", name, err)
	}
	return nil
}

// Unpack unpacks the record name into the snapshotter.
func (c *Client) Unpack(ctx context.Context, name string) error {
	cl, ctx, err := c.client(ctx)
	if err != nil {
		return err
	}
	rec, err := cl.ImageService().Get(ctx, name)
	if err != nil {
		return fmt.Errorf("looking up image %s: %w", name, err)
	}
	if err := containerd.NewImageWithPlatform(cl, rec, c.platform).Unpack(ctx, c.opts.Snapshotter); err != nil {
		return fmt.Errorf("unpacking %s: %w", name, err)
	}
	return nil
}

// Export writes the image name (this platform) as an OCI archive.
func (c *Client) Export(ctx context.Context, name string, w io.Writer) error {
	cl, ctx, err := c.client(ctx)
	if err != nil {
		return err
	}
	if err := cl.Export(ctx, w, archive.WithImage(cl.ImageService(), name), archive.WithPlatform(c.platform)); err != nil {
		return fmt.Errorf("exporting %s: %w", name, err)
	}
	return nil
}

// Import reads an OCI archive (an OCI image layout in a tar, as Export and `ctr images export`
// write it) whose index.json names exactly one image, and stores that image as name with exactly
// labels, whatever name the archive carries: no other record is created or changed. Every blob
// lands in the content store under the digest of its bytes, so what the record references is
// exactly what index.json's descriptor names; only this platform's content is needed. The caller
// checks that descriptor against what it expects (the returned Target) and unpacks.
func (c *Client) Import(ctx context.Context, r io.Reader, name string, labels map[string]string) (Image, error) {
	cl, ctx, err := c.client(ctx)
	if err != nil {
		return Image{}, err
	}
	// The lease keeps the imported blobs from garbage collection until the record refers to them.
	ctx, done, err := cl.WithLease(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("importing %s: %w", name, err)
	}
	defer func() { _ = done(ctx) }() // the record holds the content now; an expiring lease frees nothing else
	cs := cl.ContentStore()
	indexDesc, err := archive.ImportIndex(ctx, cs, r)
	if err != nil {
		return Image{}, fmt.Errorf("importing %s: %w", name, err)
	}
	b, err := content.ReadBlob(ctx, cs, indexDesc)
	if err != nil {
		return Image{}, fmt.Errorf("importing %s: reading the archive's index: %w", name, err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return Image{}, fmt.Errorf("importing %s: the archive's index: %w", name, err)
	}
	if len(idx.Manifests) != 1 {
		return Image{}, fmt.Errorf("importing %s: the archive's index names %d images, want 1", name, len(idx.Manifests))
	}
	target := idx.Manifests[0]
	target.Annotations = nil // the archive's own name for it, and nothing CRI reads
	// Label the content for garbage collection as a pull does: the record roots the target,
	// the target its children, for this platform.
	handler := images.FilterPlatforms(images.SetChildrenLabels(cs, images.ChildrenHandler(cs)), c.platform)
	if err := images.WalkNotEmpty(ctx, handler, target); err != nil {
		return Image{}, fmt.Errorf("importing %s: the archive's image %s: %w", name, target.Digest, err)
	}
	if err := c.Put(ctx, name, target, labels); err != nil {
		return Image{}, fmt.Errorf("importing %s: %w", name, err)
	}
	return Image{Name: name, Target: target, Labels: labels}, nil
}

// EventKind is what happened to an image record.
type EventKind int

const (
	Created EventKind = iota
	Updated
	Deleted
)

// Event is a change of an image record in the namespace.
type Event struct {
	Kind   EventKind
	Name   string
	Labels map[string]string // Created and Updated only
}

// Subscribe streams image events of the namespace until ctx ends or the stream breaks (a
// containerd restart); the error channel then delivers why. Nothing is replayed after a break:
// the caller re-checks everything when it resubscribes.
func (c *Client) Subscribe(ctx context.Context) (<-chan Event, <-chan error) {
	out := make(chan Event, 64)
	errc := make(chan error, 1)
	cl, nsCtx, err := c.client(ctx)
	if err != nil {
		errc <- err
		close(out)
		return out, errc
	}
	filter := fmt.Sprintf(`topic~="^/images/",namespace==%q`, c.opts.Namespace)
	envelopes, errs := cl.EventService().Subscribe(nsCtx, filter)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			case err := <-errs:
				if err == nil {
					err = errors.New("event stream closed")
				}
				errc <- fmt.Errorf("containerd image events: %w", err)
				return
			case env := <-envelopes:
				if env == nil || env.Event == nil {
					continue
				}
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				var ev Event
				switch e := v.(type) {
				case *eventtypes.ImageCreate:
					ev = Event{Kind: Created, Name: e.Name, Labels: e.Labels}
				case *eventtypes.ImageUpdate:
					ev = Event{Kind: Updated, Name: e.Name, Labels: e.Labels}
				case *eventtypes.ImageDelete:
					ev = Event{Kind: Deleted, Name: e.Name}
				default:
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
				}
			}
		}
	}()
	return out, errc
}

// Ping checks that containerd answers.
func (c *Client) Ping(ctx context.Context) error {
	cl, ctx, err := c.client(ctx)
	if err != nil {
		return err
	}
	if _, err := cl.Version(ctx); err != nil {
		return fmt.Errorf("containerd at %s: %w", c.opts.Address, err)
	}
	return nil
}

// Version is the version containerd reports through its version API, e.g. "v2.3.7".
func (c *Client) Version(ctx context.Context) (string, error) {
	cl, ctx, err := c.client(ctx)
	if err != nil {
		return "", err
	}
	v, err := cl.Version(ctx)
	if err != nil {
		return "", fmt.Errorf("containerd not reachable at %s: %w", c.opts.Address, err)
	}
	return v.Version, nil
}

// SplitHostsDirs splits a config_path the way containerd does.
func SplitHostsDirs(configPath string) []string {
	var out []string
	for _, d := range filepath.SplitList(configPath) {
		if strings.TrimSpace(d) != "" {
			out = append(out, d)
		}
	}
	return out
}

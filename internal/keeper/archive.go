package keeper

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/distribution/reference"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/containerd"
)

// fromArchive stores the image of an archive fallback (oci-archive:<path>[@<digest>], e.g. the
// /etc/eks/pause.tar of EKS AL2023 nodes) as t.Name with labels and the archive's path as its
// source, and unpacks it. The archive's index.json must name exactly one image, and that image
// must be the configured digest and the digest t.Name names (name@sha256:...), when either is
// set. containerd stores every blob it imports under the digest of its bytes, so the record
// holds exactly the image checked here; the import reads the same open file as the check.
func (k *Keeper) fromArchive(ctx context.Context, t Target, a config.ArchiveSource, labels map[string]string) (containerd.Image, error) {
	f, err := os.Open(a.Path)
	if err != nil {
		return containerd.Image{}, fmt.Errorf("opening the archive: %w", err)
	}
	defer func() { _ = f.Close() }() // read only
	held, err := archiveImage(f)
	if err != nil {
		return containerd.Image{}, fmt.Errorf("reading %s: %w", a.Path, err)
	}
	if a.Digest != "" && held != a.Digest.String() {
		return containerd.Image{}, fmt.Errorf("%s holds %s, configured %s; not imported", a.Path, held, a.Digest)
	}
	if want, ok := nameDigest(t.Name); ok && held != want {
		return containerd.Image{}, fmt.Errorf("%s holds %s, %s names %s; not imported", a.Path, held, t.Name, want)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return containerd.Image{}, fmt.Errorf("reading %s: %w", a.Path, err)
	}
	img, err := k.images.Import(ctx, f, t.Name, labelsFor(labels, a.Path, t.Name))
	if err != nil {
		return containerd.Image{}, err
	}
	if img.Target.Digest.String() != held {
		return containerd.Image{}, fmt.Errorf("%s: imported %s, its index.json names %s", a.Path, img.Target.Digest, held)
	}
	if err := k.images.Unpack(ctx, t.Name); err != nil {
		return containerd.Image{}, err
	}
	return img, nil
}

// nameDigest is the digest a name@digest reference names.
func nameDigest(name string) (string, bool) {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return "", false
	}
	c, ok := named.(reference.Canonical)
	if !ok {
		return "", false
	}
	return c.Digest().String(), true
}

package config

import (
	"fmt"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// ArchivePrefix starts a fallback that is an image archive on the node instead of an image
// reference: oci-archive:<absolute path>[@<image digest>], the name skopeo and podman give an
// OCI image layout in a tar (what `ctr images export` writes, e.g. /etc/eks/pause.tar on EKS
// AL2023 nodes). A reference can never start with it ("oci-archive:/..." does not parse as one).
const ArchivePrefix = "oci-archive:"

// ArchiveSource is an archive fallback.
type ArchiveSource struct {
	// Path is the archive file, absolute and clean.
	Path string
	// Digest, when set, is the digest of the image the archive must hold (the manifest or index
	// digest its index.json names, as `ctr images ls` shows it).
	Digest digest.Digest
}

// String is the fallback as written in the configuration.
func (a ArchiveSource) String() string {
	if a.Digest == "" {
		return ArchivePrefix + a.Path
	}
	return ArchivePrefix + a.Path + "@" + a.Digest.String()
}

// ParseArchiveSource reports whether s is an archive fallback (it starts with ArchivePrefix) and
// what it names; the error says why one that starts with the prefix is not valid.
func ParseArchiveSource(s string) (ArchiveSource, bool, error) {
	rest, ok := strings.CutPrefix(s, ArchivePrefix)
	if !ok {
		return ArchiveSource{}, false, nil
	}
	var a ArchiveSource
	a.Path = rest
	// A digest suffix is "@algorithm:encoded"; an "@" without a ":" after it is part of the path.
	if i := strings.LastIndex(rest, "@"); i >= 0 && strings.Contains(rest[i+1:], ":") {
		d, err := digest.Parse(rest[i+1:])
		if err != nil {
			return ArchiveSource{}, true, fmt.Errorf("%q: %q is not an image digest (sha256:<64 hex digits>): %w", s, rest[i+1:], err)
		}
		a.Path, a.Digest = rest[:i], d
	}
	if !filepath.IsAbs(a.Path) || filepath.Clean(a.Path) != a.Path {
		return ArchiveSource{}, true, fmt.Errorf("%q: the archive path %q is not an absolute, clean path (%s/path/to/image.tar[@sha256:<digest>])", s, a.Path, ArchivePrefix)
	}
	return a, true, nil
}

// validFallback checks a fallback: an image reference or an archive.
func validFallback(s string) error {
	if _, ok, err := ParseArchiveSource(s); ok {
		return err
	}
	if err := ValidImageRef(s); err != nil {
		return fmt.Errorf("%w (or %s/path/to/image.tar for an image archive)", err, ArchivePrefix)
	}
	return nil
}

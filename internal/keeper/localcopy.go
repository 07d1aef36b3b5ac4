package keeper

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sandbox-guard/sandbox-guard/internal/atomicfile"
	"github.com/sandbox-guard/sandbox-guard/internal/containerd"
)

// LocalCopies keeps one OCI archive per image under Dir, with a record of the archive's sha256
// and the image's manifest digest, so a corrupted or swapped file is never imported. It is what
// makes a node self-sufficient when ECR or the network is down.
type LocalCopies struct {
	Dir string
	Now func() time.Time
}

type copyRecord struct {
	Name          string    `json:"name"`
	Target        string    `json:"target"` // manifest (or index) digest of the image
	MediaType     string    `json:"mediaType"`
	Size          int64     `json:"size"`
	ArchiveSHA256 string    `json:"archiveSHA256"`
	Source        string    `json:"source,omitempty"`
	Saved         time.Time `json:"saved"`
}

func (l *LocalCopies) paths(name string) (archive, record string) {
	sum := sha256.Sum256([]byte(name))
	base := filepath.Join(l.Dir, "images", hex.EncodeToString(sum[:8]))
	return base + ".tar", base + ".json"
}

func (l *LocalCopies) read(name string) (copyRecord, error) {
	_, recPath := l.paths(name)
	b, err := os.ReadFile(recPath)
	if err != nil {
		return copyRecord{}, err
	}
	var rec copyRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return copyRecord{}, fmt.Errorf("local copy record %s: %w", recPath, err)
	}
	if rec.Name != name {
		return copyRecord{}, fmt.Errorf("local copy record %s is for %s, not %s", recPath, rec.Name, name)
	}
	return rec, nil
}

// Save exports name unless the copy on disk already holds target; it reports whether it wrote.
func (l *LocalCopies) Save(ctx context.Context, imgs Images, name string, target ocispec.Descriptor, source string) (bool, error) {
	if rec, err := l.read(name); err == nil && rec.Target == target.Digest.String() {
		archive, _ := l.paths(name)
		if sum, err := fileSHA256(archive); err == nil && sum == rec.ArchiveSHA256 {
			return false, nil // intact; a damaged copy is written again
		}
	}
	archive, recPath := l.paths(name)
	if err := os.MkdirAll(filepath.Dir(archive), 0o700); err != nil {
		return false, fmt.Errorf("local copy of %s: %w", name, err)
	}
	arch, err := atomicfile.Create(archive, 0o600)
	if err != nil {
		return false, fmt.Errorf("local copy of %s: %w", name, err)
	}
	defer arch.Discard() // no effect after Commit
	h := sha256.New()
	if err := imgs.Export(ctx, name, io.MultiWriter(arch, h)); err != nil {
		return false, fmt.Errorf("local copy of %s: %w", name, err)
	}
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	rec := copyRecord{Name: name, Target: target.Digest.String(), MediaType: target.MediaType, Size: target.Size,
		ArchiveSHA256: hex.EncodeToString(h.Sum(nil)), Source: source, Saved: now().UTC()}
	b, _ := json.MarshalIndent(rec, "", "  ")
	recFile, err := atomicfile.Create(recPath, 0o600)
	if err != nil {
		return false, fmt.Errorf("local copy of %s: %w", name, err)
	}
	defer recFile.Discard()
	if _, err := recFile.Write(b); err != nil {
		return false, fmt.Errorf("local copy of %s: %w", name, err)
	}
	// Archive first, then its record: a crash in between leaves a record that does not match
	// the archive, which Restore refuses rather than importing the wrong bytes.
	if err := arch.Commit(); err != nil {
		return false, fmt.Errorf("local copy of %s: %w", name, err)
	}
	if err := recFile.Commit(); err != nil {
		return false, fmt.Errorf("local copy of %s: %w", name, err)
	}
	return true, nil
}

// ErrNoCopy means no local copy was ever saved for the image.
var ErrNoCopy = errors.New("no local copy saved")

// Restore verifies the archive of name against its record and imports it with labels.
func (l *LocalCopies) Restore(ctx context.Context, imgs Images, name string, labels map[string]string) (containerd.Image, error) {
	rec, err := l.read(name)
	if errors.Is(err, fs.ErrNotExist) {
		return containerd.Image{}, ErrNoCopy
	}
	if err != nil {
		return containerd.Image{}, err
	}
	archive, _ := l.paths(name)
	sum, err := fileSHA256(archive)
	if err != nil {
		return containerd.Image{}, fmt.Errorf("reading local copy %s: %w", archive, err)
	}
	if sum != rec.ArchiveSHA256 {
		return containerd.Image{}, fmt.Errorf("local copy %s is corrupted (sha256 %s, recorded %s); not imported", archive, sum[:12], rec.ArchiveSHA256[:min(12, len(rec.ArchiveSHA256))])
	}
	// The archive must hold the recorded image before anything is imported under its name.
	if held, err := archiveTarget(archive); err != nil {
		return containerd.Image{}, fmt.Errorf("reading local copy %s: %w", archive, err)
	} else if held != rec.Target {
		return containerd.Image{}, fmt.Errorf("local copy %s holds %s, recorded %s; not imported", archive, held, rec.Target)
	}
	f, err := os.Open(archive)
	if err != nil {
		return containerd.Image{}, fmt.Errorf("reading local copy %s: %w", archive, err)
	}
	defer func() { _ = f.Close() }() // read only
	withSource := labels
	if rec.Source != "" {
		withSource = labelsFor(labels, rec.Source, name)
	}
	img, err := imgs.Import(ctx, f, name, withSource)
	if err != nil {
		return containerd.Image{}, err
	}
	if img.Target.Digest.String() != rec.Target {
		return containerd.Image{}, fmt.Errorf("local copy %s holds %s, recorded %s; not used", archive, img.Target.Digest, rec.Target)
	}
	if err := imgs.Unpack(ctx, name); err != nil {
		return containerd.Image{}, err
	}
	return img, nil
}

func fileSHA256(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }() // read only
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// archiveTarget reads the digest of the image an OCI archive holds, from its index.json.
func archiveTarget(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }() // read only
	return archiveImage(f)
}

// archiveImage reads an OCI image layout tar to its end and returns the digest of the one image
// its index.json names. It refuses what containerd's importer would read differently: no
// oci-layout file (the tar would be read as a Docker archive), more than one index.json (the
// importer keeps the last), an index naming no image or several.
func archiveImage(r io.Reader) (string, error) {
	tr := tar.NewReader(r)
	var layout, indexes int
	var idx ocispec.Index
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("not a tar archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		switch path.Clean(h.Name) {
		case ocispec.ImageLayoutFile:
			layout++
		case ocispec.ImageIndexFile:
			indexes++
			if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&idx); err != nil {
				return "", fmt.Errorf("index.json: %w", err)
			}
		}
	}
	switch {
	case layout == 0:
		return "", errors.New("not an OCI image layout (no oci-layout file)")
	case indexes != 1:
		return "", fmt.Errorf("the archive holds %d index.json files, want 1", indexes)
	case len(idx.Manifests) != 1:
		return "", fmt.Errorf("index.json lists %d images, want 1", len(idx.Manifests))
	}
	return idx.Manifests[0].Digest.String(), nil
}

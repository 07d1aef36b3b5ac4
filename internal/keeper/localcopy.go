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

// files names the archive and the record of name in the images directory.
func (l *LocalCopies) files(name string) (archive, record string) {
	sum := sha256.Sum256([]byte(name))
	base := hex.EncodeToString(sum[:8])
	return base + ".tar", base + ".json"
}

// images opens <Dir>/images without following a symbolic link, neither there nor at Dir itself
// (a link could put the copy where others read or replace it); mkdir creates what is missing,
// private.
func (l *LocalCopies) images(mkdir bool) (*atomicfile.Dir, error) {
	var mode fs.FileMode
	if mkdir {
		mode = 0o700
	}
	d, err := atomicfile.OpenDir(filepath.Dir(l.Dir), filepath.Join(filepath.Base(l.Dir), "images"), mode)
	if err != nil {
		return nil, fmt.Errorf("local copies in %s: %w", l.Dir, err)
	}
	return d, nil
}

func (l *LocalCopies) read(d *atomicfile.Dir, name string) (copyRecord, error) {
	_, recName := l.files(name)
	b, err := d.ReadFile(recName)
	if err != nil {
		return copyRecord{}, err
	}
	var rec copyRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return copyRecord{}, fmt.Errorf("local copy record %s: %w", d.Join(recName), err)
	}
	if rec.Name != name {
		return copyRecord{}, fmt.Errorf("local copy record %s is for %s, not %s", d.Join(recName), rec.Name, name)
	}
	return rec, nil
}

// Save exports name unless the copy on disk already holds target; it reports whether it wrote.
func (l *LocalCopies) Save(ctx context.Context, imgs Images, name string, target ocispec.Descriptor, source string) (bool, error) {
	d, err := l.images(true)
	if err != nil {
		return false, fmt.Errorf("local copy of %s: %w", name, err)
	}
	defer func() { _ = d.Close() }()
	archive, recName := l.files(name)
	if rec, err := l.read(d, name); err == nil && rec.Target == target.Digest.String() {
		if sum, err := fileSHA256(d, archive); err == nil && sum == rec.ArchiveSHA256 {
			return false, nil // intact; a damaged copy is written again
		}
	}
	arch, err := d.Create(archive, 0o600)
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
	recFile, err := d.Create(recName, 0o600)
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

// Check reports, without writing, why the copy on disk would not restore target: none saved, an
// older image, a damaged archive, a symbolic link on the way; nil when it would.
func (l *LocalCopies) Check(name string, target ocispec.Descriptor) error {
	d, err := l.images(false)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w in %s", ErrNoCopy, l.Dir)
	}
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	rec, err := l.read(d, name)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w in %s", ErrNoCopy, l.Dir)
	}
	if err != nil {
		return err
	}
	archive, _ := l.files(name)
	switch sum, err := fileSHA256(d, archive); {
	case err != nil:
		return fmt.Errorf("local copy %s: %w", d.Join(archive), err)
	case sum != rec.ArchiveSHA256:
		return fmt.Errorf("local copy %s is corrupted", d.Join(archive))
	case rec.Target != target.Digest.String():
		return fmt.Errorf("the local copy in %s holds %s, not the present %s", l.Dir, rec.Target, target.Digest)
	}
	return nil
}

// ErrNoCopy means no local copy was ever saved for the image.
var ErrNoCopy = errors.New("no local copy saved")

// Restore verifies the archive of name against its record and imports it with labels. The
// archive is opened once: the bytes imported are the bytes verified, whatever happens to the
// path meanwhile.
func (l *LocalCopies) Restore(ctx context.Context, imgs Images, name string, labels map[string]string) (containerd.Image, error) {
	d, err := l.images(false)
	if errors.Is(err, fs.ErrNotExist) {
		return containerd.Image{}, ErrNoCopy
	}
	if err != nil {
		return containerd.Image{}, err
	}
	defer func() { _ = d.Close() }()
	rec, err := l.read(d, name)
	if errors.Is(err, fs.ErrNotExist) {
		return containerd.Image{}, ErrNoCopy
	}
	if err != nil {
		return containerd.Image{}, err
	}
	archiveName, _ := l.files(name)
	archive := d.Join(archiveName)
	f, err := d.Open(archiveName)
	if err != nil {
		return containerd.Image{}, fmt.Errorf("reading local copy: %w", err)
	}
	defer func() { _ = f.Close() }() // read only
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return containerd.Image{}, fmt.Errorf("reading local copy %s: %w", archive, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != rec.ArchiveSHA256 {
		return containerd.Image{}, fmt.Errorf("local copy %s is corrupted (sha256 %s, recorded %s); not imported", archive, sum[:12], rec.ArchiveSHA256[:min(12, len(rec.ArchiveSHA256))])
	}
	// The archive must hold the recorded image before anything is imported under its name.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return containerd.Image{}, fmt.Errorf("reading local copy %s: %w", archive, err)
	}
	held, err := archiveImage(f)
	if err != nil {
		return containerd.Image{}, fmt.Errorf("reading local copy %s: %w", archive, err)
	}
	if held != rec.Target {
		return containerd.Image{}, fmt.Errorf("local copy %s holds %s, recorded %s; not imported", archive, held, rec.Target)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return containerd.Image{}, fmt.Errorf("reading local copy %s: %w", archive, err)
	}
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

func fileSHA256(d *atomicfile.Dir, name string) (string, error) {
	f, err := d.Open(name)
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

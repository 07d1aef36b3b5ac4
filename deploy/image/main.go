// Command image builds sandbox-guard's container image without Docker or a registry: for each
// static binary given, an image of it as /sandbox-guard on an empty base (plus the build machine's
// CA bundle, for the HTTPS calls to ECR), for the platform the binary is built for, all in one OCI
// image index, written as an OCI image archive that `ctr images import`, `skopeo copy --all` and
// `docker load` accept. `make image` gives it linux/amd64 and linux/arm64 (Graviton) builds. The
// archive's index.json names the image index with the annotation io.containerd.image.name, which
// is how ctr names what it imports.
//
//	go run ./deploy/image --binary bin/linux-amd64/sandbox-guard --binary bin/linux-arm64/sandbox-guard \
//	    --out bin/sandbox-guard-image.tar --ref localhost/sandbox-guard:v1
//
// The archive is reproducible: the same binaries give the same image digest.
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/sandbox-guard/sandbox-guard/internal/atomicfile"
)

// Entrypoint is the external plugin with the configuration the DaemonSet mounts from its
// ConfigMap (deploy/base).
var Entrypoint = []string{"/sandbox-guard", "run", "--config", "/etc/sandbox-guard/config.yaml"}

func main() {
	var binaries []string
	flag.Func("binary", "a static sandbox-guard binary for Linux, one per platform (repeat the flag; make image builds them)", func(s string) error {
		binaries = append(binaries, s)
		return nil
	})
	out := flag.String("out", "bin/sandbox-guard-image.tar", "the OCI image archive to write")
	ref := flag.String("ref", "localhost/sandbox-guard:dev", "the image's name, recorded in the archive")
	caBundle := flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA certificates to include as /etc/ssl/certs/ca-certificates.crt (\"\" for none)")
	flag.Parse()
	if err := build(binaries, *out, *ref, *caBundle); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Println(*out)
}

func build(binaries []string, out, ref, caBundle string) error {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("--ref %q: want a full name with a tag, e.g. localhost/sandbox-guard:v1: %w", ref, err)
	}
	if len(binaries) == 0 {
		return errors.New("no --binary given")
	}
	var ca []byte
	if caBundle != "" {
		if ca, err = os.ReadFile(caBundle); err != nil {
			return fmt.Errorf("reading the CA bundle (--ca-bundle \"\" leaves it out): %w", err)
		}
	}
	images := map[string]v1.Image{} // by architecture
	for _, binary := range binaries {
		arch, err := staticArch(binary)
		if err != nil {
			return err
		}
		if _, dup := images[arch]; dup {
			return fmt.Errorf("%s: a second binary for linux/%s", binary, arch)
		}
		bin, err := os.ReadFile(binary)
		if err != nil {
			return fmt.Errorf("reading the binary: %w", err)
		}
		files := []file{{name: "sandbox-guard", mode: 0o755, data: bin}}
		if ca != nil {
			files = append(files, file{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca})
		}
		if images[arch], err = image(files, arch, tag.TagStr()); err != nil {
			return err
		}
	}
	return writeArchive(index(images), out, tag.Name())
}

// index is an OCI image index of the images, one per platform, in architecture order.
func index(images map[string]v1.Image) v1.ImageIndex {
	var adds []mutate.IndexAddendum
	for _, arch := range slices.Sorted(maps.Keys(images)) {
		adds = append(adds, mutate.IndexAddendum{Add: images[arch], Descriptor: v1.Descriptor{
			MediaType: types.OCIManifestSchema1,
			Platform:  &v1.Platform{OS: "linux", Architecture: arch},
		}})
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
}

type file struct {
	name string
	mode int64
	data []byte
}

// staticArch returns the image architecture of an ELF binary, and refuses a dynamically linked
// one: the empty base has no libc (build with CGO_ENABLED=0, as `make build` does).
func staticArch(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: not a Linux executable: %w", path, err)
	}
	defer func() { _ = f.Close() }() // read-only
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked; the image has no libc: build it with CGO_ENABLED=0 (make build)", path)
		}
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	}
	return "", fmt.Errorf("%s: unsupported machine %v", path, f.Machine)
}

// image is one layer on an empty base, with OCI media types throughout.
func image(files []file, arch, version string) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dirs := map[string]bool{}
	for _, f := range files {
		for d := filepath.Dir(f.name); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	var names []string
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		if err := tw.WriteHeader(&tar.Header{Name: d + "/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg, ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = Entrypoint
	cf.Config.Cmd = nil
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   "sandbox-guard",
		"org.opencontainers.image.version": version,
	}
	return mutate.ConfigFile(img, cf)
}

// writeArchive writes idx as a tar of an OCI image layout whose index.json names it ref,
// atomically.
func writeArchive(idx v1.ImageIndex, out, ref string) error {
	dir, err := os.MkdirTemp("", "sandbox-guard-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("writing the OCI layout: %w", err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          ref,
		"org.opencontainers.image.ref.name": ref,
	})); err != nil {
		return fmt.Errorf("writing the OCI layout: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFrom(out, 0o644, func(w io.Writer) error { return tarDir(w, dir) })
}

// tarDir writes dir's files into a tar in name order with fixed times, so the archive depends
// only on its content.
func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Name: rel + "/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Unix(0, 0)})
		}
		if !d.Type().IsRegular() {
			return errors.New(p + ": not a regular file")
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

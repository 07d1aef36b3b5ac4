// Package atomicfile replaces a file so that a reader at any moment sees the old content or the
// new, never a part, and the new content survives a crash or power loss once the write returns.
//
// The data goes to a temporary file, which is fsynced and renamed over the target; then the
// directory is fsynced, which makes the rename itself durable. The temporary file lives in a
// private (0700) hidden directory, .<base>.tmp-*, next to the target rather than loose in the
// target's directory:
//   - the rename stays on one file system, so it is atomic;
//   - programs that scan the directory skip it: containerd's NRI refuses to start any plugin
//     when plugin_path holds an executable whose name is not NN-name, but skips directories, and
//     neither config.d's *.toml glob nor an exact name such as hosts.toml matches it;
//   - nobody else can open the partial file, whatever its mode.
//
// A write that fails removes what it made. A crash can leave a .<base>.tmp-* directory behind;
// nothing reads it, and RemoveLeftovers takes it away.
//
// Dir writes the same way into a directory reached without following a symbolic link (see
// OpenDir): what holds a secret (a registry token, a local image copy) is never written through
// a link someone put in the way.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// File is a replacement of a file being written. Nothing is visible at the target until Commit.
// Call Discard (deferred) to drop it on any path that does not reach Commit.
type File struct {
	dir     *Dir
	ownsDir bool // Create opened dir for this file alone
	name    string
	tmpDir  string // relative to dir
	f       *os.File
	done    bool
}

// Create starts replacing path with a file of mode perm. The directory must exist. The mode is
// set before any data is written and is exactly perm, not filtered by the umask, so a secret
// written with 0600 is never readable by others, not even while it is being written.
func Create(path string, perm fs.FileMode) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	d, err := openRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("writing %s: creating the temporary directory: %w", path, err)
	}
	f, err := d.Create(base, perm)
	if err != nil {
		_ = d.Close()
		return nil, err
	}
	f.ownsDir = true
	return f, nil
}

// Create starts replacing the file name in d with a file of mode perm, as the package function
// Create does.
func (d *Dir) Create(name string, perm fs.FileMode) (*File, error) {
	path := d.Join(name)
	if name == "" || strings.ContainsRune(name, '/') || name == "." || name == ".." {
		return nil, fmt.Errorf("writing %s: %q is not a file name", path, name)
	}
	tmpDir, err := d.mkdirTemp(tempPrefix(name))
	if err != nil {
		return nil, fmt.Errorf("writing %s: creating the temporary directory: %w", path, unwrapPath(err))
	}
	f, err := d.root.OpenFile(tmpDir+"/"+name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm&fs.ModePerm)
	if err == nil {
		if err = f.Chmod(perm); err != nil { // OpenFile's mode is narrowed by the umask
			_ = f.Close() // the write failed already
		}
	}
	if err != nil {
		_ = d.root.RemoveAll(tmpDir)
		return nil, fmt.Errorf("writing %s: creating the temporary file: %w", path, unwrapPath(err))
	}
	return &File{dir: d, name: name, tmpDir: tmpDir, f: f}, nil
}

// tempPrefix names the temporary directories of name; it keeps them within NAME_MAX (255) for
// any name.
func tempPrefix(name string) string { return "." + name[:min(len(name), 200)] + ".tmp-" }

// mkdirTemp makes a private directory prefix<random> in d.
func (d *Dir) mkdirTemp(prefix string) (string, error) {
	for range 100 {
		var b [8]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		name := prefix + hex.EncodeToString(b[:])
		err := d.root.Mkdir(name, 0o700)
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("no free name for a temporary directory %s*", d.Join(prefix))
}

// Write writes to the temporary file; its errors name the target (the temporary file's name
// is random, and an error that repeats must read the same each time).
func (f *File) Write(p []byte) (int, error) {
	n, err := f.f.Write(p)
	if err != nil {
		err = fmt.Errorf("writing %s: %w", f.dir.Join(f.name), unwrapPath(err))
	}
	return n, err
}

// Commit puts the written data at the target path: fsync, close, rename over the target, fsync
// the directory. Whatever the outcome, the temporary file is gone afterwards. An error after the
// rename says so: the new content is then in place but may not survive a crash.
func (f *File) Commit() error {
	path := f.dir.Join(f.name)
	if f.done {
		return fmt.Errorf("writing %s: already committed or discarded", path)
	}
	f.done = true
	defer f.release()
	defer func() { _ = f.dir.root.RemoveAll(f.tmpDir) }() // only on failure does it still hold the file
	err := f.f.Sync()
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: flushing to disk: %w", path, unwrapPath(err))
	}
	if err := f.dir.root.Rename(f.tmpDir+"/"+f.name, f.name); err != nil {
		return fmt.Errorf("writing %s: renaming into place: %w", path, unwrapPath(err))
	}
	// Removed before the directory is synced, so that the sync makes its removal durable too.
	_ = f.dir.root.Remove(f.tmpDir)
	if err := f.dir.Sync(); err != nil {
		return fmt.Errorf("%s written, but syncing its directory: %w", path, err)
	}
	return nil
}

// Discard drops an uncommitted replacement and leaves the target as it was. It does nothing
// after Commit, so it can be deferred right after Create.
func (f *File) Discard() {
	if f.done {
		return
	}
	f.done = true
	_ = f.f.Close() // discarded: the temp directory goes with it
	_ = f.dir.root.RemoveAll(f.tmpDir)
	f.release()
}

func (f *File) release() {
	if f.ownsDir {
		_ = f.dir.Close()
	}
}

// Write replaces path with data, mode perm.
func Write(path string, data []byte, perm fs.FileMode) error {
	return WriteFrom(path, perm, writeAll(data))
}

// WriteFrom replaces path with what write writes, mode perm; for content streamed rather than
// held in memory. If write fails, path is left as it was.
func WriteFrom(path string, perm fs.FileMode, write func(io.Writer) error) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	return writeAndCommit(f, path, write)
}

// Write replaces the file name in d with data, mode perm.
func (d *Dir) Write(name string, data []byte, perm fs.FileMode) error {
	return d.WriteFrom(name, perm, writeAll(data))
}

// WriteFrom replaces the file name in d with what write writes, mode perm.
func (d *Dir) WriteFrom(name string, perm fs.FileMode, write func(io.Writer) error) error {
	f, err := d.Create(name, perm)
	if err != nil {
		return err
	}
	return writeAndCommit(f, d.Join(name), write)
}

func writeAll(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}
}

func writeAndCommit(f *File, path string, write func(io.Writer) error) error {
	defer f.Discard()
	if err := write(f); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Commit()
}

func syncDir(d *os.File) error {
	err := d.Sync()
	if errors.Is(err, errors.ErrUnsupported) || errors.Is(err, syscall.EINVAL) {
		return nil // the file system cannot sync a directory (some FUSE and network ones)
	}
	return err
}

// RemoveLeftovers removes the temporary directories a crash left next to path (they may hold a
// secret, e.g. a registry token); call it only while nothing writes path.
func RemoveLeftovers(path string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	d, err := openRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking for leftovers of %s: %w", path, err)
	}
	defer func() { _ = d.Close() }()
	return d.RemoveLeftovers(base)
}

// RemoveLeftovers removes the temporary directories a crash left next to the file name in d.
func (d *Dir) RemoveLeftovers(name string) error {
	path := d.Join(name)
	dh, err := d.root.Open(".")
	if err != nil {
		return fmt.Errorf("looking for leftovers of %s: %w", path, err)
	}
	entries, err := dh.ReadDir(-1)
	_ = dh.Close() // read only
	if err != nil {
		return fmt.Errorf("looking for leftovers of %s: %w", path, err)
	}
	prefix := tempPrefix(name)
	var errs []error
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
			if err := d.root.RemoveAll(e.Name()); err != nil {
				errs = append(errs, fmt.Errorf("removing a leftover of %s: %w", path, err))
			}
		}
	}
	return errors.Join(errs...)
}

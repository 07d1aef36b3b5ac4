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
// nothing reads it.
package atomicfile

import (
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
	path   string
	tmpDir string
	f      *os.File
	done   bool
}

// Create starts replacing path with a file of mode perm. The directory must exist. The mode is
// set before any data is written and is exactly perm, not filtered by the umask, so a secret
// written with 0600 is never readable by others, not even while it is being written.
func Create(path string, perm fs.FileMode) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// Keeps the directory name within NAME_MAX (255) for any base name.
	tmpDir, err := os.MkdirTemp(dir, "."+base[:min(len(base), 200)]+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("writing %s: creating the temporary directory: %w", path, err)
	}
	f, err := os.OpenFile(filepath.Join(tmpDir, base), os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm&fs.ModePerm)
	if err == nil {
		if err = f.Chmod(perm); err != nil { // OpenFile's mode is narrowed by the umask
			_ = f.Close() // the write failed already
		}
	}
	if err != nil {
		_ = os.RemoveAll(tmpDir)
		return nil, fmt.Errorf("writing %s: creating the temporary file: %w", path, err)
	}
	return &File{path: path, tmpDir: tmpDir, f: f}, nil
}

// Write writes to the temporary file; its errors name that file.
func (f *File) Write(p []byte) (int, error) {
	return f.f.Write(p)
}

// Commit puts the written data at the target path: fsync, close, rename over the target, fsync
// the directory. Whatever the outcome, the temporary file is gone afterwards. An error after the
// rename says so: the new content is then in place but may not survive a crash.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("writing %s: already committed or discarded", f.path)
	}
	f.done = true
	defer os.RemoveAll(f.tmpDir) // only on failure does it still hold the file
	err := f.f.Sync()
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: flushing to disk: %w", f.path, err)
	}
	if err := os.Rename(f.f.Name(), f.path); err != nil {
		return fmt.Errorf("writing %s: renaming into place: %w", f.path, err)
	}
	// Removed before the directory is synced, so that the sync makes its removal durable too.
	_ = os.Remove(f.tmpDir)
	if err := syncDir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("%s written, but syncing its directory: %w", f.path, err)
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
	_ = os.RemoveAll(f.tmpDir)
}

// Write replaces path with data, mode perm.
func Write(path string, data []byte, perm fs.FileMode) error {
	return WriteFrom(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFrom replaces path with what write writes, mode perm; for content streamed rather than
// held in memory. If write fails, path is left as it was.
func WriteFrom(path string, perm fs.FileMode, write func(io.Writer) error) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Discard()
	if err := write(f); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Commit()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	err = d.Sync()
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
	prefix := "." + base[:min(len(base), 200)] + ".tmp-"
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking for leftovers of %s: %w", path, err)
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, fmt.Errorf("removing a leftover of %s: %w", path, err))
			}
		}
	}
	return errors.Join(errs...)
}

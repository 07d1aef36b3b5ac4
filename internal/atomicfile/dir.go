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

// ErrSymlink is a directory or file on the way that is a symbolic link: a link could send a
// secret elsewhere (a host's hosts.toml into _default, which containerd uses for every
// registry; a local copy into a directory others read), so it is never followed.
var ErrSymlink = errors.New("a symbolic link, which sandbox-guard does not follow here (make it a real directory or file)")

// Dir is an open directory. Every operation goes through its descriptor (openat and friends,
// via os.Root), so a path element swapped for a symbolic link after OpenDir is not followed.
type Dir struct {
	root *os.Root
	path string
}

// openRoot opens path as named, following symbolic links in it (the path an operator
// configured, e.g. containerd's config_path, is read by containerd the same way).
func openRoot(path string) (*Dir, error) {
	r, err := os.OpenRoot(path)
	if err != nil {
		return nil, err
	}
	return &Dir{root: r, path: filepath.Clean(path)}, nil
}

// OpenDir opens base as named, then each element of rel below it without following a symbolic
// link: an element that is one is refused with ErrSymlink. With mkdir set, missing elements are
// created with that mode (before the umask); without, a missing one is fs.ErrNotExist.
func OpenDir(base, rel string, mkdir fs.FileMode) (*Dir, error) {
	d, err := openRoot(base)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", base, err)
	}
	defer func() { _ = d.Close() }() // the subdirectory has a descriptor of its own
	return d.OpenDir(rel, mkdir)
}

// OpenDir opens rel below d as the package function OpenDir does.
func (d *Dir) OpenDir(rel string, mkdir fs.FileMode) (*Dir, error) {
	cur, err := d.root.OpenRoot(".")
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", d.path, err)
	}
	out := &Dir{root: cur, path: d.path}
	for _, elem := range strings.Split(filepath.ToSlash(rel), "/") {
		if elem == "" || elem == "." {
			continue
		}
		next, err := out.child(elem, mkdir)
		_ = out.Close() // next has its own descriptor
		if err != nil {
			return nil, err
		}
		out = next
	}
	return out, nil
}

// child opens the directory name in d, refusing a symbolic link: it looks at name without
// following it, opens it, and checks that what it opened is what it looked at (a link swapped
// in between is caught there).
func (d *Dir) child(name string, mkdir fs.FileMode) (*Dir, error) {
	path := d.Join(name)
	if name == ".." {
		return nil, fmt.Errorf("opening %s: a path with .. is not followed", path)
	}
	fi, err := d.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) && mkdir != 0 {
		if err := d.root.Mkdir(name, mkdir); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("creating %s: %w", path, err)
		}
		fi, err = d.root.Lstat(name)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, unwrapPath(err))
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is %w", path, ErrSymlink)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("opening %s: not a directory", path)
	}
	r, err := d.root.OpenRoot(name)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, unwrapPath(err))
	}
	opened, err := r.Stat(".")
	if err == nil && !os.SameFile(fi, opened) {
		err = fmt.Errorf("%s is %w (it changed while being opened)", path, ErrSymlink)
	}
	if err != nil {
		_ = r.Close()
		return nil, err
	}
	return &Dir{root: r, path: path}, nil
}

// unwrapPath drops os.Root's own *PathError (its path is relative); callers name the full path.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Path is the directory's path, for messages.
func (d *Dir) Path() string { return d.path }

// Join is the path of name in d, for messages.
func (d *Dir) Join(name string) string { return filepath.Join(d.path, name) }

// Close releases the directory.
func (d *Dir) Close() error { return d.root.Close() }

// Sync makes the directory's entries durable (after a rename or a removal).
func (d *Dir) Sync() error {
	f, err := d.root.Open(".")
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read only
	return syncDir(f)
}

// Open opens the regular file name in d for reading. A symbolic link is refused with
// ErrSymlink, anything else that is not a regular file (a FIFO would block the reader) with an
// error, and the file opened is checked to be the one looked at.
func (d *Dir) Open(name string) (*os.File, error) {
	path := d.Join(name)
	fi, err := d.root.Lstat(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: unwrapPath(err)}
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is %w", path, ErrSymlink)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%v)", path, fi.Mode().Type())
	}
	// O_NONBLOCK: should a FIFO have been swapped in after the look, the open must not wait
	// for a writer (it is refused below). Reads of a regular file ignore the flag.
	f, err := d.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: unwrapPath(err)}
	}
	opened, err := f.Stat()
	if err == nil && !os.SameFile(fi, opened) {
		err = fmt.Errorf("%s changed while being opened; not read", path)
	}
	if err != nil {
		_ = f.Close() // read only
		return nil, err
	}
	return f, nil
}

// ReadFile reads the regular file name in d, as Open opens it.
func (d *Dir) ReadFile(name string) ([]byte, error) {
	f, err := d.Open(name)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read only
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", d.Join(name), err)
	}
	return b, nil
}

// Remove removes the file or empty directory name in d (a symbolic link itself, never its
// target).
func (d *Dir) Remove(name string) error {
	if err := d.root.Remove(name); err != nil {
		return &fs.PathError{Op: "remove", Path: d.Join(name), Err: unwrapPath(err)}
	}
	return nil
}

// Lstat describes name in d without following a symbolic link.
func (d *Dir) Lstat(name string) (fs.FileInfo, error) {
	fi, err := d.root.Lstat(name)
	if err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: d.Join(name), Err: unwrapPath(err)}
	}
	return fi, nil
}

package install

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// writeFile puts data at path atomically, so that containerd reading it at any moment sees the
// old file or the new one, never a part, and the file survives a crash or power loss once this
// returns (the point of pre-registering is to work after a reboot).
//
// The temporary file is made in a fresh hidden directory next to path rather than as a hidden
// file: containerd's NRI refuses to start ANY plugin when plugin_path holds an executable whose
// name is not NN-name (a ".tmp" file made executable before the rename would be one), while it
// skips directories. The directory is on the same mount as path (in the DaemonSet each target
// directory is a mount of its own), so the rename is atomic; config.d's *.toml glob and conf.d's
// exact names never match it either.
func writeFile(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	tmpDir, err := os.MkdirTemp(dir, ".sandbox-guard-install-")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, filepath.Base(path))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode) // OpenFile's mode is filtered by the umask
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // makes the rename durable; not every file system supports it
		_ = d.Close()
	}
	return nil
}

// current is what a path holds now.
type current struct {
	exists bool
	data   []byte
	mode   fs.FileMode
}

func readCurrent(path string) (current, error) {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return current{}, nil
	}
	if err != nil {
		return current{}, fmt.Errorf("reading %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return current{}, fmt.Errorf("%s is not a regular file (%s): move it away first", path, st.Mode().Type())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return current{}, fmt.Errorf("reading %s: %w", path, err)
	}
	return current{exists: true, data: data, mode: st.Mode().Perm()}, nil
}

func (c current) same(data []byte, mode fs.FileMode) bool {
	return c.exists && c.mode == mode && bytes.Equal(c.data, data)
}

// backupName returns a name next to path for the file being replaced. Its suffix keeps it out of
// everything containerd reads: config.d's *.toml glob and conf.d's NN-name.conf.
func backupName(path string, now time.Time) string {
	base := path + ".bak-" + now.UTC().Format("20060102T150405Z")
	name := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, fs.ErrNotExist) {
			return name
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}

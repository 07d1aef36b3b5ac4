package install

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/atomicfile"
)

// writeFile puts data at path atomically and durably (the point of pre-registering is to work
// after a reboot). atomicfile stages it in a hidden directory, which containerd's NRI skips: an
// executable temporary file in plugin_path would stop it from starting any plugin.
func writeFile(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	return atomicfile.Write(path, data, mode)
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
// maxBackups bounds the backups kept per file: install --watch with --force runs for the life of
// a DaemonSet, and each edit it undoes leaves one.
const maxBackups = 5

// pruneBackups removes all but the newest keep backups of path (their names sort by time).
func pruneBackups(path string, keep int) error {
	names, err := filepath.Glob(globEscape(path) + ".bak-*")
	if err != nil || len(names) <= keep {
		return err
	}
	slices.Sort(names)
	var errs []error
	for _, old := range names[:len(names)-keep] {
		if err := os.Remove(old); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing old backup: %w", err))
		}
	}
	return errors.Join(errs...)
}

// globEscape quotes the glob metacharacters of a literal path.
func globEscape(path string) string {
	var b strings.Builder
	for _, r := range path {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

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

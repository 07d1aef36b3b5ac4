// Package standby is how a pre-registered sandbox-guard tells an external one (the DaemonSet)
// that containerd runs it: the pre-registered plugin holds an exclusive flock on a file in its
// state directory for as long as it is connected to containerd, and the external plugin stands
// by only while that lock is held. The kernel releases a flock when the last descriptor of the
// open file is closed, so a plugin that exits, crashes or is killed (kill -9) releases it at
// once; a stale file is just a file. What the lock cannot tell: a stopped process (SIGSTOP)
// still holds it.
//
// Only the lock's state counts, never the file's existence: install replaces the binary by
// rename and containerd may never run it, so neither the binary nor a leftover lock file says
// that a plugin gates. The file is never removed (a process could lock the removed inode while
// another one creates a new file at the path).
package standby

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// FileName is the lock file's name in the pre-registered plugin's state directory.
const FileName = "preregistered.lock"

// Path is the lock file of a plugin whose state directory is stateDir.
func Path(stateDir string) string { return filepath.Join(stateDir, FileName) }

// ErrHeld is returned by Hold when another open file holds the lock: another process, or an
// earlier Hold in this one.
var ErrHeld = errors.New("held by another process")

// Lock is a held lock; it is released by Release or when the process ends.
type Lock struct {
	f    *os.File
	path string
}

// Hold takes the lock at path without waiting, creating the file (mode 0644: it holds only a
// process ID) and its directory (0700) if needed. It writes its process ID into the file for
// the external plugin's log; failing to (a full disk) does not cost the lock. The descriptor is
// close-on-exec, so no child process can keep the lock alive after the plugin is gone.
func Hold(path string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("stand-by lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("stand-by lock: %w", err)
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if pid := readPID(path); pid > 0 {
				return nil, fmt.Errorf("stand-by lock %s: %w (pid %d)", path, ErrHeld, pid)
			}
			return nil, fmt.Errorf("stand-by lock %s: %w", path, ErrHeld)
		}
		return nil, fmt.Errorf("stand-by lock %s: flock: %w", path, err)
	}
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f, path: path}, nil
}

// Path is the lock's file.
func (l *Lock) Path() string { return l.path }

// Release gives the lock up. It is safe to call more than once and on a nil Lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the only descriptor releases the flock
	l.f = nil
	if err != nil {
		return fmt.Errorf("releasing stand-by lock %s: %w", l.path, err)
	}
	return nil
}

// Holder is what Probe found.
type Holder struct {
	// Held is true while some process holds the lock.
	Held bool
	// PID is the process ID the holder wrote into the file, as seen in the holder's PID
	// namespace (the host's, for a plugin containerd runs); 0 when unknown.
	PID int
}

// Probe reports whether some process holds the lock at path. A missing file is not held. It
// needs only read access to the file (a read-only mount will do): it tries a non-blocking
// shared lock and gives it straight back. That try can make a Hold at the same instant fail
// with ErrHeld, so holders retry.
func Probe(path string) (Holder, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return Holder{}, nil
	}
	if err != nil {
		return Holder{}, fmt.Errorf("probing stand-by lock: %w", err)
	}
	defer func() { _ = f.Close() }()
	switch err := flock(f, unix.LOCK_SH|unix.LOCK_NB); {
	case err == nil:
		return Holder{}, nil // closing f gives the shared lock back
	case errors.Is(err, unix.EWOULDBLOCK):
		return Holder{Held: true, PID: pidFrom(f)}, nil
	default:
		return Holder{}, fmt.Errorf("probing stand-by lock %s: flock: %w", path, err)
	}
}

// flock applies how to f's descriptor, retrying when a signal interrupts it.
func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if ferr = unix.Flock(int(fd), how); !errors.Is(ferr, unix.EINTR) {
				return
			}
		}
	}); err != nil {
		return err
	}
	return ferr
}

func readPID(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	return pidFrom(f)
}

// pidFrom parses the process ID a holder wrote; 0 when there is none or it is not a number.
func pidFrom(f *os.File) int {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 32))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

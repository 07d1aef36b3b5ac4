package standby

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

// helperEnv makes the test binary a process that holds the lock named by the variable, says
// so on stdout and waits to be killed.
const helperEnv = "SG_STANDBY_TEST_HOLD"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		holdUntilKilled(path)
	}
	os.Exit(m.Run())
}

// holdUntilKilled is the helper process: it never returns.
func holdUntilKilled(path string) {
	l, err := Hold(path)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("held")
	defer func() { _ = l.Release() }() // keeps l reachable: a collected *os.File closes its descriptor, and the lock with it
	select {}
}

func probe(t *testing.T, path string) Holder {
	t.Helper()
	h, err := Probe(path)
	if err != nil {
		t.Fatalf("Probe(%s): %v", path, err)
	}
	return h
}

func TestPath(t *testing.T) {
	if got := Path("/var/lib/sandbox-guard"); got != "/var/lib/sandbox-guard/preregistered.lock" {
		t.Errorf("Path = %q", got)
	}
}

// No file, a file nobody holds (left behind by a plugin that died), a held file, a released one.
func TestProbeFollowsTheLockNotTheFile(t *testing.T) {
	dir := t.TempDir()
	path := Path(filepath.Join(dir, "state"))
	if h := probe(t, path); h.Held {
		t.Error("a missing file is held")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Probe created the file: %v", err)
	}

	l, err := Hold(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("state directory created as %v (%v), want 0700", st.Mode(), err)
	}
	h := probe(t, path)
	if !h.Held || h.PID != os.Getpid() {
		t.Errorf("while held: %+v, want held by pid %d", h, os.Getpid())
	}
	if h := probe(t, path); !h.Held {
		t.Error("a probe gave the holder's lock away")
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if h := probe(t, path); h.Held {
		t.Error("held after Release")
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Release removed the file (a stale file must stay harmless, not vanish): %v", err)
	}

	// A stale file with someone else's process ID in it: not held, and Hold takes it over.
	if err := os.WriteFile(path, []byte("999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if h := probe(t, path); h.Held {
		t.Error("a stale file is held")
	}
	l, err = Hold(path)
	if err != nil {
		t.Fatalf("Hold over a stale file: %v", err)
	}
	defer func() { _ = l.Release() }()
	if b, _ := os.ReadFile(path); string(b) != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("file holds %q, want this process's ID", b)
	}
}

// One holder at a time, also within one process (each Hold opens the file anew).
func TestHoldIsExclusive(t *testing.T) {
	path := Path(t.TempDir())
	l, err := Hold(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Hold(path); !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("second Hold = %v, want ErrHeld naming pid %d", err, os.Getpid())
	}
	_ = l.Release()
	l, err = Hold(path)
	if err != nil {
		t.Fatalf("Hold after Release: %v", err)
	}
	_ = l.Release()
}

// Probing needs only read access: a file the prober cannot write is probed all the same.
func TestProbeReadOnlyFile(t *testing.T) {
	path := Path(t.TempDir())
	l, err := Hold(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Release() }()
	if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
	if h := probe(t, path); !h.Held {
		t.Error("a read-only file's lock not seen")
	}
}

// A symlink at the lock's path is refused by both sides rather than followed.
func TestSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	path := Path(dir)
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if _, err := Hold(path); err == nil {
		t.Error("Hold followed a symlink")
	}
	if _, err := Probe(path); err == nil {
		t.Error("Probe followed a symlink")
	}
}

func TestProbeErrors(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Probe(filepath.Join(notDir, FileName)); err == nil {
		t.Error("a path through a file probed without error")
	}
	if _, err := Hold(filepath.Join(notDir, FileName)); err == nil {
		t.Error("Hold under a file succeeded")
	}
}

// startHolder runs a process that holds the lock at path and returns once it does.
func startHolder(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "held\n" {
		t.Fatalf("holder process said %q (%v)", line, err)
	}
	return cmd
}

// The point of the lock: a holder killed with SIGKILL (no chance to clean up) releases it, and
// the stale file it leaves is not held.
func TestKilledHolderReleases(t *testing.T) {
	path := Path(t.TempDir())
	cmd := startHolder(t, path)
	h := probe(t, path)
	if !h.Held || h.PID != cmd.Process.Pid {
		t.Fatalf("while the holder runs: %+v, want held by pid %d", h, cmd.Process.Pid)
	}
	if _, err := Hold(path); !errors.Is(err, ErrHeld) {
		t.Errorf("Hold while another process holds it = %v, want ErrHeld", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // killed: the status says no more
	if h := probe(t, path); h.Held {
		t.Errorf("held after its holder was killed: %+v", h)
	}
	l, err := Hold(path)
	if err != nil {
		t.Fatalf("Hold after the holder was killed: %v", err)
	}
	_ = l.Release()
}

// The limit of the lock: a stopped process (SIGSTOP) still holds it; it is released only when
// the process ends.
func TestStoppedHolderStillHolds(t *testing.T) {
	path := Path(t.TempDir())
	cmd := startHolder(t, path)
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitStopped(t, cmd.Process.Pid)
	if h := probe(t, path); !h.Held {
		t.Error("a stopped holder's lock is not seen")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil { // SIGKILL ends a stopped process too
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if h := probe(t, path); h.Held {
		t.Error("held after the stopped holder was killed")
	}
}

// waitStopped waits until the kernel reports pid stopped (state T in /proc/<pid>/stat).
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	testutil.WaitFor(t, "the holder stopped", func() bool {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		i := strings.LastIndexByte(string(b), ')')
		return err == nil && i > 0 && strings.HasPrefix(string(b[i:]), ") T")
	})
}

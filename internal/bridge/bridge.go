// Package bridge lends containerd's own pulls the ECR token: it keeps, in containerd's registry
// hosts directory, a hosts.toml entry for each ECR host of the kept images whose Authorization
// header holds the current token. containerd reads hosts.toml on every pull, CRI's own sandbox
// image pull included, so even while sandbox-guard is not running a deleted sandbox image is
// pulled with credentials instead of failing with 401. The layout fails safe (see Merge).
package bridge

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guard/sandbox-guard/internal/atomicfile"
	"github.com/sandbox-guard/sandbox-guard/internal/backoff"
	"github.com/sandbox-guard/sandbox-guard/internal/ecr"
)

// Tokens hands out ECR credentials for a registry host.
type Tokens interface {
	Credentials(ctx context.Context, host string) (ecr.Credentials, error)
}

// HostState is what the bridge last did for one host, for `check` and metrics. It never holds
// the token.
type HostState struct {
	Host      string
	File      string
	Written   time.Time
	ExpiresAt time.Time
	Err       string
	// Unrecorded says why the entry is written but not in the ledger (the state directory is
	// full or read-only): it would stay behind should the host leave the configuration.
	Unrecorded string
}

// Bridge keeps the entries fresh.
type Bridge struct {
	Dir     string   // the hosts directory containerd reads (config_path)
	Hosts   []string // ECR registry hosts of the kept images
	Tokens  Tokens
	Now     func() time.Time
	OnWrite func(host, outcome string) // metrics
	// Declared are the hosts the operator declared under ecr.registries: for them a server over
	// plain http is accepted too (a registry on loopback in tests). Any other host's token goes
	// only to https://<host>.
	Declared []string
	// Ledger records every file the bridge writes, so that Run takes its entry out of files of
	// hosts no longer configured; nil: nothing is recorded.
	Ledger *Ledger
	// Retry is the back-off after a failed refresh; zero: 1 s doubling to 5 min.
	Retry backoff.Policy

	mu    sync.Mutex
	state map[string]HostState
}

// File is the hosts.toml of host.
func (b *Bridge) File(host string) string { return Entry{Dir: b.Dir, Host: host}.File() }

// State returns the state of every host.
func (b *Bridge) State() []HostState {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []HostState
	for _, h := range b.Hosts {
		st, ok := b.state[h]
		if !ok {
			st = HostState{Host: h, File: b.File(h)}
		}
		out = append(out, st)
	}
	return out
}

func (b *Bridge) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// entries are the files the bridge writes now.
func (b *Bridge) entries() []Entry {
	out := make([]Entry, 0, len(b.Hosts))
	for _, h := range b.Hosts {
		out = append(out, Entry{Dir: b.Dir, Host: h})
	}
	return out
}

// Run takes the bridge's entry out of every recorded file it no longer writes, then refreshes
// every host's entry until ctx ends: at half of the token's remaining lifetime, from the token
// cache shared with the image keeper. A failure is logged when it first appears or changes,
// and when it clears, not at every retry.
func (b *Bridge) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		PruneUntilDone(ctx, b.Ledger, b.entries(), nil)
	}()
	for _, h := range b.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.runHost(ctx, h)
		}()
	}
	wg.Wait()
}

func (b *Bridge) runHost(ctx context.Context, host string) {
	policy := b.Retry
	if policy.Initial == 0 {
		policy = backoff.Policy{Initial: time.Second, Max: 5 * time.Minute, Jitter: 0.2}
	}
	bo, unrecordedRetry := backoff.New(policy), backoff.New(policy)
	logger := log.G(ctx).WithField("host", host)
	var lastErr, lastUnrecorded string
	for {
		next, err := b.Refresh(ctx, host)
		if err != nil {
			next = bo.Next()
			if err.Error() != lastErr {
				logger.WithField("retry_in", next.Round(time.Second).String()).WithError(err).Error("credential bridge not refreshed (logged again when the error changes)")
			}
			lastErr = err.Error()
		} else {
			bo.Reset()
			if lastErr != "" {
				logger.Info("credential bridge refreshed again")
			}
			lastErr = ""
		}
		u := b.hostState(host).Unrecorded
		if u != lastUnrecorded {
			if u != "" {
				logger.WithField("why", u).Warn("credential bridge entry written but not recorded in its ledger: it would stay behind if this host left the configuration")
			} else {
				logger.Info("credential bridge entry recorded in its ledger")
			}
			lastUnrecorded = u
		}
		if err == nil && u != "" {
			next = min(next, unrecordedRetry.Next()) // recorded as soon as the state directory takes it
		} else if u == "" {
			unrecordedRetry.Reset()
		}
		if !backoff.Sleep(ctx, next) {
			return
		}
	}
}

func (b *Bridge) hostState(host string) HostState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state[host]
}

// Refresh writes host's entry with the current token and returns when to refresh again.
func (b *Bridge) Refresh(ctx context.Context, host string) (time.Duration, error) {
	file := b.File(host)
	st := HostState{Host: host, File: file}
	defer func() {
		b.mu.Lock()
		if b.state == nil {
			b.state = map[string]HostState{}
		}
		b.state[host] = st
		b.mu.Unlock()
	}()
	fail := func(outcome string, err error) (time.Duration, error) {
		st.Err = err.Error()
		b.onWrite(host, outcome)
		return 0, err
	}
	// The host's directory is opened without following a symbolic link: certs.d/<host> linked
	// to _default (read for every registry) or elsewhere must not receive the token.
	dir, err := atomicfile.OpenDir(b.Dir, host, 0)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail("error", fmt.Errorf("%s not written: %w", file, err))
	}
	if exists {
		defer func() { _ = dir.Close() }()
		// A crash while writing can leave a temporary copy holding an old token: none may linger.
		if err := dir.RemoveLeftovers(hostsToml); err != nil {
			log.G(ctx).WithError(err).Warn("credential bridge: cannot remove a leftover temporary file")
		}
	}
	creds, err := b.Tokens.Credentials(ctx, host)
	if err != nil {
		return fail("token-error", fmt.Errorf("token for %s: %w", host, err))
	}
	header := "Basic " + base64.StdEncoding.EncodeToString([]byte(creds.Username+":"+creds.Password))
	var existing []byte
	if exists {
		existing, err = dir.ReadFile(hostsToml)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail("error", fmt.Errorf("%s not written: %w", file, err))
		}
	}
	if existing == nil {
		if why := wouldHide(b.Dir, host); why != "" {
			return fail("error", fmt.Errorf("%s not created: %s", file, why))
		}
	}
	if err := b.checkServer(host, existing); err != nil {
		// The token must not travel to a mirror, a cache or over plain http: write nothing, and
		// take out an entry written before the file changed.
		msg := fmt.Sprintf("%s: nothing written: %v", file, err)
		if HasBlock(existing) {
			if rerr := removeEntry(Entry{Dir: b.Dir, Host: host}); rerr != nil {
				return fail("refused", fmt.Errorf("%s; removing the old entry: %w", msg, rerr))
			}
		}
		return fail("refused", errors.New(msg))
	}
	merged, err := Merge(existing, "https://"+host, header)
	if err != nil {
		return fail("error", fmt.Errorf("%s left untouched: %w", file, err))
	}
	// Recorded before it is written: a crash in between leaves a record of a file without the
	// entry, which removal skips, never an entry nobody knows of.
	if err := b.Ledger.Add(Entry{Dir: b.Dir, Host: host}); err != nil {
		st.Unrecorded = err.Error()
	}
	if string(merged) != string(existing) {
		if !exists {
			if dir, err = atomicfile.OpenDir(b.Dir, host, 0o755); err != nil {
				return fail(writeOutcome(err), writeError(file, err))
			}
			defer func() { _ = dir.Close() }()
		}
		if err := dir.Write(hostsToml, merged, 0o600); err != nil {
			return fail(writeOutcome(err), writeError(file, err))
		}
		b.onWrite(host, "written")
		log.G(ctx).WithFields(logrus.Fields{"file": file, "expires": creds.ExpiresAt.UTC().Format(time.RFC3339)}).Info("credential bridge entry written")
	}
	st.Written, st.ExpiresAt = b.now(), creds.ExpiresAt
	// Half of the remaining lifetime, as the token cache does: the next Credentials call then
	// brings a new token, well before the header goes stale.
	next := creds.ExpiresAt.Sub(b.now()) / 2
	return min(max(next, 5*time.Second), time.Hour), nil
}

// Inspect looks at host's hosts.toml the way Refresh would write it, without writing or asking
// for a token (the check command, which runs beside the plugin): it records why the entry
// cannot be there, if anything stands in the way.
func (b *Bridge) Inspect(host string) {
	file := b.File(host)
	st := HostState{Host: host, File: file}
	defer func() {
		b.mu.Lock()
		if b.state == nil {
			b.state = map[string]HostState{}
		}
		b.state[host] = st
		b.mu.Unlock()
	}()
	dir, err := atomicfile.OpenDir(b.Dir, host, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if why := wouldHide(b.Dir, host); why != "" {
			st.Err = fmt.Sprintf("%s not created: %s", file, why)
		} else if err := readOnly(b.Dir); err != nil {
			st.Err = writeError(file, err).Error()
		}
		return
	case err != nil:
		st.Err = fmt.Sprintf("%s not written: %v", file, err)
		return
	}
	defer func() { _ = dir.Close() }()
	existing, err := dir.ReadFile(hostsToml)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		st.Err = fmt.Sprintf("%s not written: %v", file, err)
		return
	}
	if err := b.checkServer(host, existing); err != nil {
		st.Err = fmt.Sprintf("%s: nothing written: %v", file, err)
		return
	}
	if _, err := Merge(existing, "https://"+host, "Basic "); err != nil {
		st.Err = fmt.Sprintf("%s left untouched: %v", file, err)
		return
	}
	if err := readOnly(dir.Path()); err != nil {
		st.Err = writeError(file, err).Error()
		return
	}
	if HasBlock(existing) && b.Ledger != nil {
		recorded, err := b.Ledger.Entries()
		if err == nil && !slices.Contains(recorded, Entry{Dir: b.Dir, Host: host}) {
			err = fmt.Errorf("not in %s", b.Ledger.Path())
		}
		if err != nil {
			st.Unrecorded = err.Error()
		}
	}
}

// readOnly returns EROFS when dir is on a read-only file system.
func readOnly(dir string) error {
	if err := unix.Access(dir, unix.W_OK); errors.Is(err, unix.EROFS) {
		return &fs.PathError{Op: "access", Path: dir, Err: err}
	}
	return nil
}

const hostsToml = "hosts.toml"

// writeError says plainly when the hosts directory cannot be written at all: a read-only
// mount (a container's /etc/containerd mounted read-only) is fixed by the operator, not by
// retrying.
func writeError(file string, err error) error {
	if errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%s not written: the hosts directory is on a read-only file system; mount it writable for sandbox-guard or turn ecr.credentialBridge off: %w", file, err)
	}
	return err
}

func writeOutcome(err error) string {
	if errors.Is(err, syscall.EROFS) {
		return "read-only"
	}
	return "error"
}

// checkServer allows the token only to the ECR registry itself: the server hosts.toml names must
// be https://<host> (any scheme for a declared host).
func (b *Bridge) checkServer(host string, existing []byte) error {
	server, err := Server(existing, "https://"+host)
	if err != nil {
		return fmt.Errorf("left untouched: %w", err)
	}
	u, err := url.Parse(server)
	switch {
	case err != nil:
		return fmt.Errorf("server %q is not a URL", server)
	case u.Host != host:
		return fmt.Errorf("it sends %s's pulls to %s, not to the ECR registry itself; the token goes only to https://%s", host, server, host)
	case u.Scheme != "https" && !slices.Contains(b.Declared, host):
		return fmt.Errorf("its server %s is not https; the token goes only over https", server)
	}
	return nil
}

func (b *Bridge) onWrite(host, outcome string) {
	if b.OnWrite != nil {
		b.OnWrite(host, outcome)
	}
}

// Remove takes out exactly what the bridge added to each host's hosts.toml in dir (the whole
// file and its directory if the bridge created them); files without the bridge's entry are not
// touched.
func Remove(dir string, hosts []string) error {
	var errs []error
	for _, h := range hosts {
		errs = append(errs, removeEntry(Entry{Dir: dir, Host: h}))
	}
	return errors.Join(errs...)
}

// removeEntry takes the bridge's entry out of e's file, never through a symbolic link.
func removeEntry(e Entry) error {
	file := e.File()
	d, err := atomicfile.OpenDir(e.Dir, e.Host, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing the credential bridge entry from %s: %w", file, err)
	}
	defer func() { _ = d.Close() }()
	existing, err := d.ReadFile(hostsToml)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing the credential bridge entry: %w", err)
	}
	if !HasBlock(existing) {
		return nil
	}
	r, err := removeBlock(existing)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if !r.Empty() {
		return writeError(file, d.Write(hostsToml, r.content, 0o600))
	}
	if err := d.Remove(hostsToml); err != nil {
		return writeError(file, err)
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%s removed, but syncing its directory: %w", file, err)
	}
	if parent, err := atomicfile.OpenDir(e.Dir, "", 0); err == nil {
		_ = parent.Remove(e.Host) // only if empty (the bridge created it)
		_ = parent.Close()
	}
	return nil
}

// wouldHide says what a new <dir>/<host>/hosts.toml would change besides adding the header:
// containerd uses the first of <host>, _default that exists, so a new host directory hides
// _default; and once hosts.toml exists it no longer reads Docker-style certificate files next to
// it. In both cases the operator has to write the host's hosts.toml (the bridge then adds its
// entry to it); "" when creating the file is harmless.
func wouldHide(dir, host string) string {
	if _, err := os.Stat(filepath.Join(dir, "_default")); err == nil {
		return fmt.Sprintf("%s exists and a host directory would hide it for %s; create %s/hosts.toml yourself", filepath.Join(dir, "_default"), host, filepath.Join(dir, host))
	}
	entries, _ := os.ReadDir(filepath.Join(dir, host))
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".crt", ".cert", ".key":
			return fmt.Sprintf("%s holds certificate files that containerd stops reading once hosts.toml exists; write a hosts.toml naming them (ca, client) yourself", filepath.Join(dir, host))
		}
	}
	return ""
}

package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/sandbox-guard/sandbox-guard/internal/atomicfile"
	"github.com/sandbox-guard/sandbox-guard/internal/backoff"
)

// Entry is one hosts.toml the bridge writes: <Dir>/<Host>/hosts.toml.
type Entry struct {
	Dir  string `json:"dir"` // the hosts directory (containerd's config_path)
	Host string `json:"host"`
}

// File is the entry's hosts.toml.
func (e Entry) File() string { return filepath.Join(e.Dir, e.Host, hostsToml) }

// clean spells the directory one way: the same file recorded as certs.d/ and as certs.d must
// not look like a file the bridge no longer writes.
func (e Entry) clean() Entry { return Entry{Dir: filepath.Clean(e.Dir), Host: e.Host} }

func cleanAll(es []Entry) []Entry {
	out := make([]Entry, 0, len(es))
	for _, e := range es {
		out = append(out, e.clean())
	}
	return out
}

// Ledger is the list, kept in the state directory, of every hosts.toml the bridge has put its
// entry into. With it the entry is taken out of a host's file even after the host left the
// configuration (another image, another hosts directory, the bridge turned off), also after a
// restart. A nil *Ledger records nothing.
type Ledger struct {
	StateDir string
	mu       sync.Mutex // one process writes it; its generations take turns
}

const ledgerFile = "credential-bridge.json"

type ledgerDoc struct {
	// Written lists the files that may hold the bridge's entry.
	Written []Entry `json:"written"`
}

// Path is the ledger's file.
func (l *Ledger) Path() string { return filepath.Join(l.StateDir, ledgerFile) }

// stateDir opens the state directory without following a symbolic link (it is created when
// missing, private).
func (l *Ledger) stateDir() (*atomicfile.Dir, error) {
	return atomicfile.OpenDir(filepath.Dir(l.StateDir), filepath.Base(l.StateDir), 0o700)
}

// Entries returns what the ledger holds; none when there is no ledger yet.
func (l *Ledger) Entries() ([]Entry, error) {
	if l == nil {
		return nil, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.read()
}

func (l *Ledger) read() ([]Entry, error) {
	d, err := atomicfile.OpenDir(filepath.Dir(l.StateDir), filepath.Base(l.StateDir), 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the credential bridge's ledger: %w", err)
	}
	defer func() { _ = d.Close() }()
	b, err := d.ReadFile(ledgerFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the credential bridge's ledger: %w", err)
	}
	var doc ledgerDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("reading the credential bridge's ledger %s: %w", l.Path(), err)
	}
	return cleanAll(doc.Written), nil
}

// Add records e; it writes only when e is new.
func (l *Ledger) Add(e Entry) error {
	e = e.clean()
	return l.update(func(es []Entry) []Entry {
		if slices.Contains(es, e) {
			return es
		}
		return append(es, e)
	})
}

// Drop forgets e.
func (l *Ledger) Drop(e Entry) error {
	e = e.clean()
	return l.update(func(es []Entry) []Entry {
		return slices.DeleteFunc(es, func(x Entry) bool { return x == e })
	})
}

func (l *Ledger) update(change func([]Entry) []Entry) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	before, err := l.read()
	if err != nil {
		return err
	}
	after := change(slices.Clone(before))
	if slices.Equal(before, after) {
		return nil
	}
	b, err := json.MarshalIndent(ledgerDoc{Written: after}, "", "  ")
	if err != nil {
		return err
	}
	d, err := l.stateDir()
	if err != nil {
		return fmt.Errorf("recording in the credential bridge's ledger: %w", err)
	}
	defer func() { _ = d.Close() }()
	if err := d.Write(ledgerFile, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("recording in the credential bridge's ledger: %w", err)
	}
	return nil
}

// Prune takes the bridge's entry out of every file the ledger records except those in keep,
// and out of the files in extra (hosts a bridge wrote before it kept a ledger); what it took
// out, or found without an entry, leaves the ledger.
func Prune(l *Ledger, keep, extra []Entry) error {
	recorded, err := l.Entries()
	if err != nil {
		return err
	}
	keep, extra = cleanAll(keep), cleanAll(extra)
	var errs []error
	for _, e := range extra {
		if !slices.Contains(recorded, e) && !slices.Contains(keep, e) {
			errs = append(errs, removeEntry(e))
		}
	}
	for _, e := range recorded {
		if slices.Contains(keep, e) {
			continue
		}
		if err := removeEntry(e); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, l.Drop(e))
	}
	return errors.Join(errs...)
}

// PruneUntilDone runs Prune until it succeeds (true) or ctx ends (false), backing off in
// between; a failure is logged when it first appears or changes.
func PruneUntilDone(ctx context.Context, l *Ledger, keep, extra []Entry) bool {
	bo := backoff.New(backoff.Policy{Initial: time.Second, Max: 5 * time.Minute, Jitter: 0.2})
	var last string
	for {
		err := Prune(l, keep, extra)
		if err == nil {
			if last != "" {
				log.G(ctx).Info("credential bridge: entries of hosts no longer configured removed")
			}
			return true
		}
		next := bo.Next()
		if err.Error() != last {
			log.G(ctx).WithError(err).WithField("retry_in", next.Round(time.Second).String()).
				Error("credential bridge: cannot remove its entry from a hosts.toml it no longer keeps (logged again when the error changes)")
		}
		last = err.Error()
		if !backoff.Sleep(ctx, next) {
			return false
		}
	}
}

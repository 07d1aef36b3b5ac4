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
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

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

	mu    sync.Mutex
	state map[string]HostState
}

// File is the hosts.toml of host.
func (b *Bridge) File(host string) string { return filepath.Join(b.Dir, host, "hosts.toml") }

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

// Run refreshes every host's entry until ctx ends: at half of the token's remaining lifetime,
// from the token cache shared with the image keeper.
func (b *Bridge) Run(ctx context.Context) {
	var wg sync.WaitGroup
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
	bo := backoff.New(backoff.Policy{Initial: time.Second, Max: 5 * time.Minute, Jitter: 0.2})
	for {
		next, err := b.Refresh(ctx, host)
		if err != nil {
			next = bo.Next()
			log.G(ctx).WithField("host", host).WithField("retry_in", next.Round(time.Second).String()).WithError(err).Error("credential bridge not refreshed")
		} else {
			bo.Reset()
		}
		if !backoff.Sleep(ctx, next) {
			return
		}
	}
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
	// A crash while writing can leave a temporary copy holding an old token: none may linger.
	if err := atomicfile.RemoveLeftovers(file); err != nil {
		log.G(ctx).WithError(err).Warn("credential bridge: cannot remove a leftover temporary file")
	}
	creds, err := b.Tokens.Credentials(ctx, host)
	if err != nil {
		st.Err = err.Error()
		b.onWrite(host, "token-error")
		return 0, fmt.Errorf("token for %s: %w", host, err)
	}
	header := "Basic " + base64.StdEncoding.EncodeToString([]byte(creds.Username+":"+creds.Password))
	existing, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		st.Err = err.Error()
		b.onWrite(host, "error")
		return 0, fmt.Errorf("reading %s: %w", file, err)
	}
	if existing == nil {
		if why := wouldHide(b.Dir, host); why != "" {
			st.Err = fmt.Sprintf("%s not created: %s", file, why)
			b.onWrite(host, "error")
			return 0, errors.New(st.Err)
		}
	}
	if err := b.checkServer(host, existing); err != nil {
		// The token must not travel to a mirror, a cache or over plain http: write nothing, and
		// take out an entry written before the file changed.
		st.Err = fmt.Sprintf("%s: nothing written: %v", file, err)
		b.onWrite(host, "refused")
		if HasBlock(existing) {
			if rerr := Remove(b.Dir, []string{host}); rerr != nil {
				return 0, fmt.Errorf("%s; removing the old entry: %w", st.Err, rerr)
			}
		}
		return 0, errors.New(st.Err)
	}
	merged, err := Merge(existing, "https://"+host, header)
	if err != nil {
		st.Err = fmt.Sprintf("%s left untouched: %v", file, err)
		b.onWrite(host, "error")
		return 0, errors.New(st.Err)
	}
	if string(merged) != string(existing) {
		if err := WriteAtomic(file, merged); err != nil {
			st.Err = err.Error()
			b.onWrite(host, "error")
			return 0, err
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

// Remove takes out exactly what the bridge added to each host's hosts.toml (the whole file if
// the bridge created it); files without the bridge's entry are not touched. Used when the
// bridge is turned off.
func Remove(dir string, hosts []string) error {
	var errs []error
	for _, h := range hosts {
		file := filepath.Join(dir, h, "hosts.toml")
		existing, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !HasBlock(existing) {
			continue
		}
		r, err := removeBlock(existing)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		if r.Empty() {
			err = os.Remove(file)
			_ = os.Remove(filepath.Dir(file)) // only if empty
		} else {
			err = WriteAtomic(file, r.content)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// WriteAtomic writes a root-only file (it holds a token) atomically: containerd skips a
// hosts.toml that fails to parse, so it must never see half a file.
func WriteAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
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

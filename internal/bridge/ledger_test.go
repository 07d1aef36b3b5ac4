package bridge

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

const otherHost = "111122223333.dkr.ecr.eu-west-1.amazonaws.com"

// The bridge takes its entry out of every file it ever wrote, not only those of the current
// configuration: after a switch to another host, another hosts directory, or the bridge turned
// off, and across a restart (a new process reads the ledger from the state directory).
func TestRunRemovesEntriesOfHostsNoLongerConfigured(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := testutil.Context(testutil.QuietLogger())
	state, certs, otherCerts := filepath.Join(t.TempDir(), "state"), t.TempDir(), t.TempDir()
	// An operator's own hosts.toml for host: only the bridge's block may go, the rest stays.
	own := "# the operator's\nserver = \"https://" + host + "\"\n"
	mustWrite(t, filepath.Join(certs, host, "hosts.toml"), own)

	// The first process bridges host.
	first := &Bridge{Dir: certs, Hosts: []string{host}, Tokens: fixedTokens{now.Add(12 * time.Hour)}, Now: func() time.Time { return now },
		Ledger: &Ledger{StateDir: state}}
	if _, err := first.Refresh(ctx, host); err != nil {
		t.Fatal(err)
	}
	if !HasBlock([]byte(readString(t, filepath.Join(certs, host, "hosts.toml")))) {
		t.Fatal("no entry written")
	}
	if st, err := os.Stat(filepath.Join(state, ledgerFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ledger %v (%v), want a 0600 file", st, err)
	}

	// A new process, configured for another host: host's entry goes at its start.
	second := &Bridge{Dir: certs, Hosts: []string{otherHost}, Tokens: fixedTokens{now.Add(12 * time.Hour)}, Now: func() time.Time { return now },
		Ledger: &Ledger{StateDir: state}}
	runUntil(t, ctx, second, func() bool {
		return readString(t, filepath.Join(certs, host, "hosts.toml")) == own && !second.State()[0].Written.IsZero()
	})
	if got := ledgerHosts(t, state); !slices.Equal(got, []string{certs + " " + otherHost}) {
		t.Errorf("ledger %v, want only the other host", got)
	}

	// Another hosts directory (containerd's config_path changed): the file the bridge created
	// in the old one goes, with its directory.
	third := &Bridge{Dir: otherCerts, Hosts: []string{otherHost}, Tokens: fixedTokens{now.Add(12 * time.Hour)}, Now: func() time.Time { return now },
		Ledger: &Ledger{StateDir: state}}
	runUntil(t, ctx, third, func() bool {
		_, err := os.Stat(filepath.Join(certs, otherHost))
		return os.IsNotExist(err) && !third.State()[0].Written.IsZero()
	})

	// The bridge turned off: whatever is recorded goes.
	if err := Prune(&Ledger{StateDir: state}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(otherCerts, otherHost)); !os.IsNotExist(err) {
		t.Errorf("the entry in %s is still there (%v)", otherCerts, err)
	}
	if got := ledgerHosts(t, state); len(got) != 0 {
		t.Errorf("ledger %v after everything was removed, want empty", got)
	}
	if got := readString(t, filepath.Join(certs, host, "hosts.toml")); got != own {
		t.Errorf("the operator's file changed:\n%s", got)
	}
}

// A bridge that wrote before it kept a ledger (an older version): turning it off still takes
// out the entries of the hosts it is configured for.
func TestPruneRemovesUnrecordedPlannedEntries(t *testing.T) {
	certs := t.TempDir()
	created, err := Merge(nil, "https://"+host, auth)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(certs, host, "hosts.toml"), string(created))
	if err := Prune(&Ledger{StateDir: t.TempDir()}, nil, []Entry{{Dir: certs, Host: host}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(certs, host)); !os.IsNotExist(err) {
		t.Errorf("entry still there (%v)", err)
	}
}

// A state directory that cannot hold the ledger (here a symbolic link, refused like a full or
// read-only one fails) does not stop the bridge: the entry is written and the state says it is
// not recorded.
func TestRefreshWritesWhenTheLedgerCannotBeWritten(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base, outside, certs := t.TempDir(), t.TempDir(), t.TempDir()
	mustSymlink(t, outside, filepath.Join(base, "state"))
	b := &Bridge{Dir: certs, Hosts: []string{host}, Tokens: fixedTokens{now.Add(12 * time.Hour)}, Now: func() time.Time { return now },
		Ledger: &Ledger{StateDir: filepath.Join(base, "state")}}
	if _, err := b.Refresh(testutil.Context(testutil.QuietLogger()), host); err != nil {
		t.Fatal(err)
	}
	if !HasBlock([]byte(readString(t, filepath.Join(certs, host, "hosts.toml")))) {
		t.Fatal("no entry written")
	}
	if st := b.State()[0]; !strings.Contains(st.Unrecorded, "symbolic link") || st.Err != "" {
		t.Errorf("state %+v: want written, and why it is not recorded", st)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("the ledger was written through the link: %v", entries)
	}
}

// runUntil runs b until cond holds.
func runUntil(t *testing.T, ctx context.Context, b *Bridge, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	testutil.WaitFor(t, "the bridge's run", cond)
}

func ledgerHosts(t *testing.T, state string) []string {
	t.Helper()
	es, err := (&Ledger{StateDir: state}).Entries()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Dir+" "+e.Host)
	}
	return out
}

// The same hosts directory spelled two ways (config_path with a trailing slash) is the same
// file: its entry is kept.
func TestPruneKeepsTheSameFileSpelledOtherwise(t *testing.T) {
	certs, state := t.TempDir(), t.TempDir()
	created, err := Merge(nil, "https://"+host, auth)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(certs, host, "hosts.toml"), string(created))
	l := &Ledger{StateDir: state}
	if err := l.Add(Entry{Dir: certs + "/", Host: host}); err != nil {
		t.Fatal(err)
	}
	if err := Prune(l, []Entry{{Dir: certs, Host: host}}, nil); err != nil {
		t.Fatal(err)
	}
	if !HasBlock([]byte(readString(t, filepath.Join(certs, host, "hosts.toml")))) {
		t.Error("the entry of the file still written was removed")
	}
}

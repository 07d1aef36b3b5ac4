package install

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
)

// Sources name the files a round installs; they are read again on every round, since the
// ConfigMap behind Config may change while the installer DaemonSet runs.
type Sources struct {
	Binary string // the plugin binary to install
	Config string // the plugin configuration; empty: the shipped one
}

// Watch installs once and, with every > 0, again every interval until ctx ends, printing one
// line per file to stdout (later rounds: only what changed) and notes and warnings to stderr.
// The first round's error ends it (so that an installer pod shows it); a later round's error is
// reported and retried while the files installed last keep working. An *InputError is the
// caller's fault (exit code 2).
func Watch(ctx context.Context, opts Options, src Sources, every time.Duration, stdout, stderr io.Writer) error {
	res, err := round(opts, src, nil, stdout, stderr)
	if err != nil || every <= 0 {
		return err
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			next, err := round(opts, src, res, stdout, stderr)
			if err != nil {
				_, _ = fmt.Fprintln(stderr, "sandbox-guard install:", err)
				continue
			}
			res = next
		}
	}
}

func round(opts Options, src Sources, last *Result, stdout, stderr io.Writer) (*Result, error) {
	var err error
	if opts.Binary, err = os.ReadFile(src.Binary); err != nil {
		return nil, fmt.Errorf("reading the binary: %w", err)
	}
	if src.Config != "" {
		if opts.Config, err = os.ReadFile(src.Config); err != nil {
			return nil, &InputError{Err: fmt.Errorf("reading the configuration: %w", err)}
		}
		opts.ConfigSource = src.Config
	}
	res, err := Run(opts)
	if err != nil {
		return nil, err
	}
	report(res, last, stdout, stderr)
	return res, nil
}

// report prints one line per file and the warnings. With last (a watch round), it prints only
// what changed since: a quiet log while nothing happens.
func report(res, last *Result, stdout, stderr io.Writer) {
	for _, f := range res.Files {
		if last != nil && f.Action == Unchanged {
			continue
		}
		if last != nil && f.Action == Kept && slices.ContainsFunc(last.Files, func(l File) bool { return l == f }) {
			continue
		}
		line := fmt.Sprintf("%-13s %s", f.Action, f.Path)
		if f.Note != "" {
			line += ": " + f.Note
		}
		_, _ = fmt.Fprintln(stdout, line)
	}
	if last != nil && slices.Equal(res.Warnings, last.Warnings) && slices.Equal(res.Notes, last.Notes) && !res.Changed() {
		return
	}
	for _, n := range res.Notes {
		_, _ = fmt.Fprintln(stderr, "sandbox-guard install: note:", n)
	}
	for _, w := range res.Warnings {
		_, _ = fmt.Fprintln(stderr, "sandbox-guard install: WARNING:", w)
	}
	line := map[int]string{1: "1.7", 2: "2.x"}[res.Major]
	if res.Line != containerdconfig.LineUnknown {
		line = res.Line.String()
	}
	switch {
	case !res.Active:
	case res.Changed():
		_, _ = fmt.Fprintf(stderr, "sandbox-guard install: containerd %s (%s; drop-in version %d) starts sandbox-guard at its next start (e.g. systemctl restart containerd; running containers keep running)\n",
			line, res.MajorSource, res.DropInVersion)
	case last == nil:
		_, _ = fmt.Fprintf(stderr, "sandbox-guard install: containerd %s (%s; drop-in version %d): nothing to do\n", line, res.MajorSource, res.DropInVersion)
	}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/install"
)

// cmdInstall puts this binary, its configuration and containerd's NRI drop-in on the node, so
// that containerd starts sandbox-guard as a pre-registered plugin from its next start on (also
// after every reboot). It prints one line per file; warnings go to stderr.
func cmdInstall(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: sandbox-guard install [flags]

Installs sandbox-guard as a pre-registered NRI plugin:
  <root>/opt/nri/plugins/10-sandbox-guard                 this binary (or --binary)
  <root>/etc/nri/conf.d/10-sandbox-guard.conf             the configuration (or --config), only if absent
  <root>/etc/containerd/config.d/sandbox-guard-nri.toml   switches NRI on (containerd 1.7 or 2.x variant)
Files already right are left untouched ("unchanged"); an edited configuration is kept unless --force.
containerd's main configuration is only read: a missing imports line is reported, never added.
containerd starts the plugin at its next start.

flags:
`)
		fs.PrintDefaults()
	}
	root := fs.String("root", "/", "where the node's file system is (the installer DaemonSet mounts it at /host)")
	pathsRoot := fs.String("paths-root", "/", "put in front of the paths written into the drop-in and of the default paths, as containerd\n"+
		"sees them; \"/\" on a node. Tests that run a containerd under a temporary directory pass it here and as --root")
	containerdConfig := fs.String("containerd-config", "", "containerd's main configuration as containerd sees it (default <paths-root>/etc/containerd/config.toml);\nread to pick the drop-in and to check that it is loaded, never written")
	major := fs.Int("containerd-major", 0, "1 for containerd 1.7 (version = 2 drop-in), 2 for 2.x (version = 3);\ndefault: from the main configuration's version line")
	binary := fs.String("binary", "", "the plugin binary to install (default: this executable)")
	cfgFile := fs.String("config", "", "the plugin configuration to install (default: the shipped one)")
	force := fs.Bool("force", false, "replace configuration files that differ from what would be written, keeping <file>.bak-<time>")
	watch := fs.Duration("watch", 0, "install again every DURATION until stopped (the installer DaemonSet); 0: once")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitBadInput
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sandbox-guard install: unexpected argument %q\n", fs.Arg(0))
		return exitBadInput
	}
	if *watch < 0 {
		fmt.Fprintf(stderr, "sandbox-guard install: --watch %v: must not be negative\n", *watch)
		return exitBadInput
	}
	binPath := *binary
	if binPath == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "sandbox-guard install: finding this executable (pass --binary): %v\n", err)
			return exitFailure
		}
		binPath = exe
	}
	opts := install.Options{Root: *root, PathsRoot: *pathsRoot, ContainerdConfig: *containerdConfig,
		ContainerdMajor: *major, Force: *force}

	once := func(last *install.Result) (*install.Result, int) {
		// Read both inputs on every round: the ConfigMap behind --config may have changed.
		var err error
		if opts.Binary, err = os.ReadFile(binPath); err != nil {
			fmt.Fprintf(stderr, "sandbox-guard install: reading the binary: %v\n", err)
			return nil, exitFailure
		}
		opts.Config, opts.ConfigSource = nil, ""
		if *cfgFile != "" {
			if opts.Config, err = os.ReadFile(*cfgFile); err != nil {
				fmt.Fprintf(stderr, "sandbox-guard install: reading the configuration: %v\n", err)
				return nil, exitBadInput
			}
			opts.ConfigSource = *cfgFile
		}
		res, err := install.Run(opts)
		if err != nil {
			fmt.Fprintln(stderr, "sandbox-guard install:", err)
			if _, ok := errors.AsType[*install.InputError](err); ok {
				return nil, exitBadInput
			}
			return nil, exitFailure
		}
		report(res, last, stdout, stderr)
		return res, exitOK
	}

	res, code := once(nil)
	if *watch == 0 || code != exitOK {
		// The first round's failure ends the installer too, so that its pod shows it.
		return code
	}
	t := time.NewTicker(*watch)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return exitOK
		case <-t.C:
			// A later failure (e.g. a ConfigMap edit that does not parse) is reported and retried;
			// the files installed last keep working meanwhile.
			if next, _ := once(res); next != nil {
				res = next
			}
		}
	}
}

// report prints one line per file and the warnings. With last (a watch round), it prints only
// what changed since: a quiet log while nothing happens.
func report(res, last *install.Result, stdout, stderr io.Writer) {
	for _, f := range res.Files {
		if last != nil && f.Action == install.Unchanged {
			continue
		}
		if last != nil && f.Action == install.Kept && slices.ContainsFunc(last.Files, func(l install.File) bool { return l == f }) {
			continue
		}
		line := fmt.Sprintf("%-13s %s", f.Action, f.Path)
		if f.Note != "" {
			line += ": " + f.Note
		}
		fmt.Fprintln(stdout, line)
	}
	if last != nil && slices.Equal(res.Warnings, last.Warnings) && slices.Equal(res.Notes, last.Notes) && !res.Changed() {
		return
	}
	for _, n := range res.Notes {
		fmt.Fprintln(stderr, "sandbox-guard install: note:", n)
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(stderr, "sandbox-guard install: WARNING:", w)
	}
	switch {
	case !res.Active:
	case res.Changed():
		fmt.Fprintf(stderr, "sandbox-guard install: containerd %s (%s) starts sandbox-guard at its next start (e.g. systemctl restart containerd; running containers keep running)\n",
			map[int]string{1: "1.7", 2: "2.x"}[res.Major], res.MajorSource)
	case last == nil:
		fmt.Fprintf(stderr, "sandbox-guard install: containerd %s (%s): nothing to do\n", map[int]string{1: "1.7", 2: "2.x"}[res.Major], res.MajorSource)
	}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

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
  <root>/etc/containerd/config.d/sandbox-guard-nri.toml   switches NRI on (version 2, 3 or 4, as containerd reads it)
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
	major := fs.Int("containerd-major", 0, "1 for containerd 1.7 (version = 2 drop-in), 2 for 2.x (the main configuration's version,\n2 to 4, else 3); default: from --containerd-version, containerd --version or the main configuration's version")
	version := fs.String("containerd-version", "", "containerd's version (e.g. 2.3.7): the drop-in then takes the main configuration's version where\nthat line reads it (1.7: 2; 2.0-2.2: 2 or 3; 2.3+: 2, 3 or 4), else 2 for 1.7 and 3 for 2.x")
	ctrBin := fs.String("containerd-bin", "", "a containerd binary to ask for its version (default: with --root /, the containerd in PATH if any)")
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
		ContainerdMajor: *major, ContainerdVersion: *version, ContainerdBinary: *ctrBin, Force: *force}
	err := install.Watch(ctx, opts, install.Sources{Binary: binPath, Config: *cfgFile}, *watch, stdout, stderr)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "sandbox-guard install:", err)
	if _, ok := errors.AsType[*install.InputError](err); ok {
		return exitBadInput
	}
	return exitFailure
}

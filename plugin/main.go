// Command sandbox-guard is a containerd NRI plugin that refuses pod sandboxes while the node's
// network is not ready and keeps the sandbox image present.
//
//	sandbox-guard                        started by containerd (NRI_PLUGIN_SOCKET set)
//	sandbox-guard run --config FILE      external plugin, e.g. in a DaemonSet
//	sandbox-guard check [--config FILE]  run every check now and print the result
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/nri/pkg/api"
)

// Exit codes shared by every command.
const (
	exitOK       = 0
	exitFailure  = 1 // the command ran and the answer is "no" (node not ready, ensure failed)
	exitBadInput = 2 // bad configuration or usage
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		if os.Getenv(api.PluginSocketEnvVar) != "" {
			boundRuntime(os.Getenv)
			return runPreRegistered(ctx)
		}
		usage(stderr)
		return exitBadInput
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stderr)
	case "install":
		return cmdInstall(ctx, args[1:], stdout, stderr)
	case "check":
		return cmdCheck(ctx, args[1:], stdout, stderr)
	case "ensure":
		return cmdEnsure(ctx, args[1:], stdout, stderr)
	case "eks-pause-image":
		return cmdEKSPauseImage(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "sandbox-guard", version)
		return exitOK
	case "help", "-h", "--help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "sandbox-guard: unknown command %q\n", args[0])
	usage(stderr)
	return exitBadInput
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: sandbox-guard [command] [flags]

Started by containerd without arguments (pre-registered in /opt/nri/plugins as 10-sandbox-guard),
it reads its configuration from containerd (/etc/nri/conf.d/10-sandbox-guard.conf).

commands:
  run     --config FILE [--nri-socket PATH]   run as an external NRI plugin (logs to stderr)
  install [--root DIR] [--force] ...          pre-register the plugin: binary, config, containerd's NRI drop-in
  check   [--config FILE] [-o table|json]     run every check now; exit 0 ready, 1 not ready, 2 bad config
  ensure  [--config FILE]                     make every configured image present and pinned once; exit 0/1
  eks-pause-image --region R [--fips] [--version V]   print the EKS pause image for a region
  version                                     print the version
`)
}

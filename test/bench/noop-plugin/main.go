// Command noop-plugin is the floor of a Go NRI plugin for `make bench`: NRI's own stub
// (github.com/containerd/nri/pkg/stub) subscribed to RunPodSandbox and admitting every pod,
// nothing else. Built like sandbox-guard (static, stripped), its binary size and its memory
// next to sandbox-guard's, on the same containerd in the same run, are what no Go NRI plugin
// can go below.
//
// containerd starts it pre-registered (no arguments, NRI_PLUGIN_SOCKET set); with -socket it
// connects as an external plugin.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type plugin struct{}

// RunPodSandbox admits the pod: the hook with nothing in it.
func (plugin) RunPodSandbox(context.Context, *api.PodSandbox) error { return nil }

func main() {
	socket := flag.String("socket", "", "NRI socket of an external plugin (default: pre-registered, from containerd)")
	flag.Parse()
	var opts []stub.Option
	if *socket != "" {
		opts = append(opts, stub.WithSocketPath(*socket), stub.WithPluginName("noop"), stub.WithPluginIdx("90"))
	}
	s, err := stub.New(plugin{}, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "noop-plugin:", err)
		os.Exit(1)
	}
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "noop-plugin:", err)
		os.Exit(1)
	}
}

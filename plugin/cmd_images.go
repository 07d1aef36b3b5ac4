package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/ecr"
	"github.com/sandbox-guard/sandbox-guard/internal/logging"
	"github.com/sandbox-guard/sandbox-guard/internal/supervisor"
)

// cmdEnsure makes every configured image present and pinned once: what the EKS AMI's one-shot
// sandbox-image.service did, with the right credentials, region, fallbacks and pinning.
func cmdEnsure(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ensure", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", config.DefaultFile, "configuration file")
	if err := fs.Parse(args); err != nil {
		return exitBadInput
	}
	cfg, err := config.LoadFile(*cfgFile)
	if err != nil {
		fmt.Fprintln(stderr, "sandbox-guard:", err)
		return exitBadInput
	}
	ctx = log.WithLogger(ctx, logrus.NewEntry(logging.New(cfg.Log, stderr)))
	sts, err := supervisor.Ensure(ctx, cfg)
	if errors.Is(err, supervisor.ErrConfig) {
		fmt.Fprintln(stderr, "sandbox-guard:", err)
		return exitBadInput
	}
	for _, s := range sts {
		if s.Present && s.Pinned {
			fmt.Fprintf(stdout, "%s %s: present and pinned (source %s)\n", s.Role, s.Name, s.Source)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "sandbox-guard: ensure:", err)
		return exitFailure
	}
	if len(sts) == 0 {
		fmt.Fprintln(stdout, "no images configured (sandboxImage and pinImages are empty)")
	}
	return exitOK
}

// cmdEKSPauseImage prints the EKS pause image for a region.
func cmdEKSPauseImage(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("eks-pause-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	region := fs.String("region", "", "AWS region of the node (required)")
	fips := fs.Bool("fips", false, "use the FIPS endpoint host")
	version := fs.String("version", ecr.DefaultPauseVersion, "pause image tag")
	if err := fs.Parse(args); err != nil {
		return exitBadInput
	}
	if *region == "" {
		fmt.Fprintln(stderr, "sandbox-guard eks-pause-image: --region is required")
		return exitBadInput
	}
	fmt.Fprintln(stdout, ecr.PauseImage(*region, *fips, *version))
	return exitOK
}

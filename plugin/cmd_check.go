package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/logging"
	"github.com/sandbox-guard/sandbox-guard/internal/supervisor"
)

// cmdCheck runs every check once and prints what it found: the first thing an operator runs.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", config.DefaultFile, "configuration file")
	output := fs.String("o", "table", "output format: table or json")
	if err := fs.Parse(args); err != nil {
		return exitBadInput
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintf(stderr, "sandbox-guard: -o %q: want table or json\n", *output)
		return exitBadInput
	}
	cfg, err := config.LoadFile(*cfgFile)
	if err != nil {
		fmt.Fprintln(stderr, "sandbox-guard:", err)
		return exitBadInput
	}
	logCfg := cfg.Log
	logCfg.Level = logrus.ErrorLevel.String()
	ctx = log.WithLogger(ctx, logrus.NewEntry(logging.New(logCfg, stderr)))
	st, err := supervisor.Check(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "sandbox-guard:", err)
		return exitBadInput
	}
	if *output == "json" {
		writeJSON(stdout, cfg, st)
	} else {
		writeTable(stdout, cfg, st)
	}
	if !st.Ready() {
		return exitFailure
	}
	return exitOK
}

type checkJSON struct {
	Name          string  `json:"name"`
	Kind          string  `json:"kind"`
	OK            bool    `json:"ok"`
	Detail        string  `json:"detail"`
	Hint          string  `json:"hint,omitempty"`
	Informational bool    `json:"informational,omitempty"`
	AgeSeconds    float64 `json:"ageSeconds"`
	TookSeconds   float64 `json:"tookSeconds"`
}

func writeJSON(w io.Writer, cfg *config.Config, st supervisor.Status) {
	out := struct {
		Ready  bool        `json:"ready"`
		Mode   string      `json:"mode"`
		Checks []checkJSON `json:"checks"`
	}{Ready: st.Ready(), Mode: string(cfg.Mode), Checks: []checkJSON{}}
	for _, r := range st.Rows() {
		out.Checks = append(out.Checks, checkJSON{Name: r.Name, Kind: r.Kind, OK: r.OK, Detail: r.Detail, Hint: r.Hint,
			Informational: r.Informational, AgeSeconds: time.Since(r.Checked).Seconds(), TookSeconds: r.Took.Seconds()})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

func writeTable(w io.Writer, cfg *config.Config, st supervisor.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "CHECK\tKIND\tSTATUS\tDETAIL\tAGE")
	for _, r := range st.Rows() {
		status := "ok"
		switch {
		case !r.OK && r.Informational:
			status = "WARN"
		case !r.OK:
			status = "FAIL"
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Kind, status, r.Detail, time.Since(r.Checked).Round(time.Millisecond))
	}
	_ = tw.Flush()
	if st.Ready() {
		fmt.Fprintf(w, "node ready (mode %s): pods are admitted\n", cfg.Mode)
	} else {
		fmt.Fprintf(w, "node NOT ready (mode %s): pod sandboxes would be %s\n", cfg.Mode,
			map[config.Mode]string{config.ModeEnforce: "rejected", config.ModeWarn: "admitted with a warning", config.ModeOff: "admitted (gate off)"}[cfg.Mode])
	}
}

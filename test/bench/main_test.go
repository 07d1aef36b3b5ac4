// Package bench is `make bench`: it measures what the issue asks sandbox-guard to cost (hook
// latency, pod start overhead, check refresh cost against big iptables rulesets, image repair
// latency, memory, ECR token calls) on this machine, with the real plugin against real
// containerd where a node is needed, and writes docs/benchmarks.md. It is a test binary only to
// reuse the end-to-end harness (which needs a testing.TB), like the demo.
//
//	make bench        # or: go test -c -o bin/bench ./test/bench && ./bin/bench -test.run '^TestBench$' -out docs/benchmarks.md
//
// Without -out, TestBench skips, so `go test ./...` never runs it. The Go benchmarks of the
// decision path also run alone: go test -run '^$' -bench . ./test/bench
package bench

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

var (
	outFile = flag.String("out", "", "write the markdown report to this file; TestBench skips without it")
	quick   = flag.Bool("quick", false, "far fewer iterations, to try the harness (the report says so)")
	only    = flag.String("only", "", "comma-separated measurement numbers to run (default: all); the report holds only those")
	merge   = flag.Bool("merge", false, "with -only: keep the other measurements of the existing -out file (from its earlier run) and replace only these")
)

// selected reports whether measurement num is to run.
func selected(num int) bool {
	if *only == "" {
		return true
	}
	for _, f := range strings.Split(*only, ",") {
		if strings.TrimSpace(f) == fmt.Sprint(num) {
			return true
		}
	}
	return false
}

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// say prints progress at once (the binary runs without go test's buffering of -v output).
func say(format string, args ...any) {
	fmt.Printf("%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// measurement is one numbered measurement of the issue.
type measurement struct {
	num   int
	title string
	run   func(t testing.TB, s *section) error
}

func TestBench(t *testing.T) {
	if *outFile == "" {
		t.Skip("the benchmark runs only with -out FILE (make bench)")
	}
	t.Setenv("REQUIRE_E2E", "1") // a benchmark that silently measures nothing is worse than a failure
	start := time.Now()
	rep := newReport()
	say("sandbox-guard benchmark: %s, %d cores, kernel %s, %s; report goes to %s", rep.machine.CPU, rep.machine.Cores, rep.machine.Kernel, rep.machine.Go, *outFile)

	sections := map[int]*section{}
	for _, m := range []measurement{
		{1, "Hook latency from the cached snapshot", measureHook},
		{6, "ECR token calls under 1000 concurrent ensures", measureTokens},
		{3, "Check refresh cost against big nat tables, both iptables backends", measureRefresh},
	} {
		if selected(m.num) {
			sections[m.num] = runSection(t, m)
		}
	}
	// 2, 5 and 4 share two real nodes: the plugin node is measured idle, then against the bare
	// node (pod start overhead), then after 1000 sandboxes (memory), then for repairs.
	if selected(2) || selected(4) || selected(5) {
		for _, s := range runNodeSections(t) {
			if selected(s.num) {
				sections[s.num] = s
			}
		}
	}
	for i := 1; i <= 6; i++ {
		if s := sections[i]; s != nil {
			rep.sections = append(rep.sections, s)
		}
	}
	rep.took = time.Since(start)
	text := rep.markdown()
	if *merge && *only != "" {
		old, err := os.ReadFile(*outFile)
		if err != nil {
			t.Fatalf("-merge: %v", err)
		}
		var rerun []int
		for _, s := range rep.sections {
			rerun = append(rerun, s.num)
		}
		text = mergeReports(string(old), text, rerun)
	}
	if err := os.WriteFile(*outFile, []byte(text), 0o644); err != nil {
		t.Fatalf("writing %s: %v", *outFile, err)
	}
	say("wrote %s after %v", *outFile, rep.took.Round(time.Second))
	fmt.Println(rep.summaryText())
	for _, s := range rep.sections {
		if s.err != "" {
			t.Errorf("measurement %d (%s) failed: %s", s.num, s.title, s.err)
		}
	}
}

// runSection runs one measurement in a subtest of its own, so that a harness failure (t.Fatal)
// or its cleanups stay inside it and the report is still written.
func runSection(t *testing.T, m measurement) *section {
	s := &section{num: m.num, title: m.title}
	say("=== %d. %s", m.num, m.title)
	begin := time.Now()
	s.load[0] = loadAvg()
	t.Run(fmt.Sprintf("%d", m.num), func(t *testing.T) {
		rt := recTB{TB: t, s: s}
		defer func() {
			if r := recover(); r != nil {
				s.fail(fmt.Sprintf("panic: %v", r))
				t.Errorf("panic: %v", r)
			}
		}()
		if err := m.run(rt, s); err != nil {
			s.fail(err.Error())
		}
	})
	s.took = time.Since(begin)
	s.load[1] = loadAvg()
	if s.err != "" {
		say("--- %d. FAILED after %v: %s", m.num, s.took.Round(time.Second), s.err)
	} else {
		say("--- %d. done in %v", m.num, s.took.Round(time.Second))
	}
	return s
}

// recTB records a harness failure in the section before failing the subtest.
type recTB struct {
	testing.TB
	s *section
}

func (r recTB) Fatalf(format string, args ...any) {
	r.s.fail(fmt.Sprintf(format, args...))
	r.TB.Fatalf(format, args...)
}

func (r recTB) Fatal(args ...any) {
	r.s.fail(fmt.Sprint(args...))
	r.TB.Fatal(args...)
}

func (r recTB) Errorf(format string, args ...any) {
	r.s.fail(fmt.Sprintf(format, args...))
	r.TB.Errorf(format, args...)
}

func (r recTB) Error(args ...any) {
	r.s.fail(fmt.Sprint(args...))
	r.TB.Error(args...)
}

// section is one measurement's part of the report.
type section struct {
	num     int
	title   string
	method  []string // paragraphs: what was done
	body    strings.Builder
	notes   []string // what to read into the numbers
	summary []summaryRow
	err     string
	took    time.Duration
	load    [2]string // 1-minute load average when the measurement began and ended
}

type summaryRow struct {
	what, value, target, met string
}

func (s *section) fail(msg string) {
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > 600 {
		msg = msg[:600] + "..."
	}
	if s.err == "" {
		s.err = msg
	} else if !strings.Contains(s.err, msg) {
		s.err += "; " + msg
	}
}

func (s *section) methodf(format string, args ...any) {
	s.method = append(s.method, fmt.Sprintf(format, args...))
}

func (s *section) notef(format string, args ...any) {
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

func (s *section) printf(format string, args ...any) { fmt.Fprintf(&s.body, format, args...) }

func (s *section) row(what, value, target, met string) {
	s.summary = append(s.summary, summaryRow{what, value, target, met})
}

// iterations scales an iteration count down for -quick.
func iterations(full, quickN int) int {
	if *quick {
		return quickN
	}
	return full
}

// loadAvg is the 1-minute load average: other work on this small machine shows in the numbers.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	pb "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCompareWithCrictl runs the same command lines through real crictl and crictl-lite
// against the fake CRI server and compares exit status, stdout and stderr (timestamps, pids
// and the binaries' directory normalized; JSON compared by value because protojson spaces
// its output differently in every binary). Opt-in:
//
//	/work/shared/tools/build-crictl /tmp/crictl-bin
//	CRICTL_COMPARE=/tmp/crictl-bin/crictl go test -run TestCompareWithCrictl -v ./test/cri/crictl-lite/
func TestCompareWithCrictl(t *testing.T) {
	crictl := os.Getenv("CRICTL_COMPARE")
	if crictl == "" {
		t.Skip("set CRICTL_COMPARE to a real crictl binary to compare with it")
	}

	clearCRIEnv(t)

	lite := filepath.Join(t.TempDir(), "crictl")
	if out, err := exec.Command("go", "build", "-o", lite, ".").CombinedOutput(); err != nil {
		t.Fatalf("build crictl-lite: %v\n%s", err, out)
	}

	dir := t.TempDir()
	sock := filepath.Join(dir, "cri.sock")
	ep := "unix://" + sock
	files := map[string]string{
		"pod.json":    `{"metadata": {"name": "p1", "namespace": "default", "uid": "u1"}, "labels": {"app": "x"}, "log_directory": "/tmp/x"}`,
		"reject.json": `{"metadata": {"name": "nri-reject", "namespace": "default", "uid": "u2"}, "linux": {}}`,
		"pod2.yaml":   "metadata:\n  name: p2\n  namespace: other\n  uid: u3\nannotations:\n  a: b\n",
		"nometa.json": `{"hostname": "x"}`,
		"ctr.json":    `{"metadata": {"name": "c1"}, "image": {"image": "docker.io/library/busybox:1.36"}, "envs": [{"key": "A", "value": "b"}]}`,
		"cfg.yaml":    "runtime-endpoint: " + ep + "\ntimeout: 5\n",
		"bad.yaml":    "runtime_endpoint: " + ep + "\n",
	}

	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	pod := fakeID("pod", "default", "p1", "u1", "0")
	pod2 := fakeID("pod", "other", "p2", "u3", "0")
	ctr := fakeID("ctr", pod, "c1", "0")
	fx := func(name string) string { return filepath.Join(dir, name) }

	type step struct {
		args      []string
		noStdout  bool // help text: crictl-lite's is shorter
		unordered bool // crictl works on a map concurrently: compare sorted lines
	}

	r := func(args ...string) step { return step{args: append([]string{"-r", ep}, args...)} }
	steps := []step{
		r("version"), r("info"), r("info", "-q", "-o", "yaml"), r("info", "-o", "table"),
		r("runp", fx("pod.json")), r("runp", fx("reject.json")), r("runp", fx("missing.json")), r("runp", fx("nometa.json")),
		r("runp", "-r", "runc", fx("pod2.yaml")),
		r("pods"), r("pods", "-q"), r("pods", "-o", "json"), r("pods", "-o", "yaml"), r("pods", "--name", "p1", "-q"),
		r("pods", "--namespace", "other"), r("pods", "-v"), r("pods", "--no-trunc", "-s", "ready"), r("pods", "-s", "bogus"),
		r("pods", "-o", "xml"), r("pods", "--label", "app=x", "-q"), r("pods", "--latest", "-q"),
		r("pull", "busybox"), r("pull", "--creds", "user:pass", "docker.io/library/busybox:1.36"),
		r("pull", "--pod-config", fx("pod.json"), "-a", "k=v", "quay.io/a/b:1"),
		r("pull", "busybox:denied"), r("pull", "missing:1"), r("pull"), r("pull", "--creds", ":x", "busybox"),
		r("images"), r("images", "-q"), r("images", "-o", "json"), r("images", "--digests", "--pinned", "--no-trunc"),
		r("images", "-v"), r("images", "registry.k8s.io/pause:3.10"),
		r("inspecti", "docker.io/library/busybox:1.36"), r("inspecti", "-q", "-o", "json", "registry.k8s.io/pause:3.10"),
		r("inspecti", "-o", "yaml", "registry.k8s.io/pause:3.10"), r("inspecti", "-o", "table", "registry.k8s.io/pause:3.10"),
		r("inspecti", "nothere"), r("inspecti"),
		r("create", pod, fx("ctr.json"), fx("pod.json")), r("ps"), r("ps", "-a"), r("start", ctr), r("start", ctr),
		r("ps"), r("ps", "-aq"), r("ps", "-o", "json"), r("ps", "-v"), r("ps", "--pod", pod, "--no-trunc"),
		r("ps", "--image", "busybox:1.36", "-q"), r("ps", "-r"), r("ps", "-s", "bogus"),
		r("rmp", pod), r("rm", ctr), r("stop", ctr), r("ps", "-a"), r("rm", ctr), r("rm", ctr),
		r("stopp", pod, pod2), r("rmp", pod), r("rmp", "nonexistent"), r("rmp", "-a"), r("rmp", "-fa"),
		r("runp", fx("pod.json")), r("rmp", "-f", pod),
		r("rmi", "quay.io/a/b:1"), r("rmi", "nothere"), {args: []string{"-r", ep, "rmi", "-q"}, unordered: true},
		r("stop", "-a"), r("stop"), r("stop", "-a", "x"), r("start"),
		{args: []string{"-r", ep, "stopp"}, noStdout: true},
		{args: []string{"-r", ep, "pods", "--bogus"}, noStdout: true},
		{args: []string{"--bogus", "pods"}, noStdout: true},
		{args: []string{"-r", ep, "runp"}, noStdout: true},
		{args: []string{"-r", ep, "rmp"}, noStdout: true},
		{args: []string{"-r", ep, "create", pod}, noStdout: true},
		r("bogus"),
		{args: []string{"-r", "unix://" + fx("dead.sock"), "runp", fx("pod.json")}},
		{args: []string{"-r", "unix://" + fx("dead.sock"), "pull", "busybox"}},
		{args: []string{"-r", "tcp://localhost:1", "version"}},
		{args: []string{"-r", ep, "-i", "unix://" + fx("dead.sock"), "images"}},
		{args: []string{"-r", ep, "-t", "0", "version"}},
		{args: []string{"--config", fx("cfg.yaml"), "version"}},
		{args: []string{"-c", fx("bad.yaml"), "version"}},
		{args: []string{"--config", fx("nonexistent.yaml"), "version"}},
		{args: []string{"-r", "", "version"}},
		{args: []string{"-i", "", "-r", "", "images"}},
	}

	created := newFakeCRI().created

	run := func(bin string) []string {
		f := newFakeCRI()
		f.created = created // same timestamps in both runs

		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}

		srv := grpc.NewServer()
		pb.RegisterRuntimeServiceServer(srv, f)
		pb.RegisterImageServiceServer(srv, f)

		go func() { _ = srv.Serve(l) }()
		defer srv.Stop()

		var results []string

		for _, s := range steps {
			cmd := exec.Command(bin, s.args...)

			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr

			err := cmd.Run()

			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatal(err)
			}

			out := normalizeStdout(stdout.String())

			switch {
			case s.noStdout:
				out = "(not compared)"
			case s.unordered:
				lines := strings.SplitAfter(out, "\n")
				slices.Sort(lines)
				out = strings.Join(lines, "")
			}

			results = append(results, fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s",
				cmd.ProcessState.ExitCode(), out, normalizeStderr(stderr.String(), filepath.Dir(bin))))
		}

		return results
	}

	want, got := run(crictl), run(lite)
	same := 0

	for i, s := range steps {
		if want[i] == got[i] {
			same++

			continue
		}

		t.Errorf("crictl %s\n=== crictl\n%s=== crictl-lite\n%s", strings.Join(s.args, " "), want[i], got[i])
	}

	t.Logf("%d of %d command lines behave the same", same, len(steps))
}

var (
	logrusTime = regexp.MustCompile(`time="[^"]+"`)
	klogHeader = regexp.MustCompile(`(?m)^([EWI])\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ `)
	stdlogTime = regexp.MustCompile(`(?m)^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d `)
)

func normalizeStderr(s, binDir string) string {
	s = logrusTime.ReplaceAllString(s, `time="T"`)
	s = klogHeader.ReplaceAllString(s, "${1}0000 00:00:00.000000 PID ")
	s = stdlogTime.ReplaceAllString(s, "DATE ")

	return strings.ReplaceAll(s, binDir, "BINDIR")
}

// normalizeStdout re-encodes JSON documents so that only their values are compared.
func normalizeStdout(s string) string {
	trimmed := strings.TrimSpace(s)
	if !strings.HasPrefix(trimmed, "{") && !strings.HasPrefix(trimmed, "[") {
		return s
	}

	var v any
	if err := json.Unmarshal([]byte(trimmed), &v); err != nil {
		return s
	}

	out, _ := json.MarshalIndent(v, "", "  ")

	return "(json) " + string(out) + "\n"
}

// Package harness runs real nodes for sandbox-guard's end-to-end tests: containerd (1.7, 2.2,
// 2.3 and 2.4) with CRI and NRI, runc, CNI and an auth-protected registry, each test in a
// network namespace of its own, so iptables chains, bridges and loopback servers never touch the
// host. StartKube adds a one-node Kubernetes cluster around a node (etcd, API server,
// controllers, scheduler, and a kubelet running pods through that containerd). Everything is
// torn down when the test ends, pass or fail.
package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
)

// Containerd is one containerd build under test.
type Containerd struct {
	Name    string                // "containerd-2.2", "containerd-1.7", ...: the subtest name
	Major   int                   // 2 or 1
	Line    containerdconfig.Line // the release line (2.2, 2.3, ...)
	Version string                // what `containerd --version` says, e.g. "2.3.7+unknown"
	BinDir  string                // holds containerd, ctr, containerd-shim-runc-v2
}

// ConfigVersion is the config version this line's `containerd config default` writes, the
// format the harness writes the node's configuration in: 2 for 1.7, 3 for 2.0-2.2, 4 from 2.3.
func (c Containerd) ConfigVersion() int { return c.Line.ConfigVersion() }

// lines are the containerd lines every end-to-end test runs on, with the variable
// test/tools/install-deps.sh exports for each. The first is what test/demo and test/bench use.
var lines = []struct {
	line containerdconfig.Line
	env  string
}{
	{containerdconfig.Line22, "SG_CONTAINERD2"},
	{containerdconfig.Line23, "SG_CONTAINERD23"},
	{containerdconfig.Line24, "SG_CONTAINERD24"},
	{containerdconfig.Line17, "SG_CONTAINERD17"},
}

// Env is what the machine provides, found through environment variables set by
// test/tools/install-deps.sh (the Makefile and .ci/run do that).
type Env struct {
	Containerds []Containerd
	Runc        string
	CNIBin      string
	Registry    string
	Crictl      string // the real crictl (env CRICTL)
	Plugin      string // the sandbox-guard binary under test
	Pause       string // the static pause binary for the test image
	App         string // the static app binary for the kubelet tests' application image (test/app)
	RepoRoot    string
}

var (
	envOnce sync.Once
	envVal  *Env
	envErr  error
	binDir  string
)

// Main runs a test binary's tests and removes what the harness built for them.
func Main(m *testing.M) int {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	return code
}

// Required reports whether end-to-end tests must run (CI sets REQUIRE_E2E=1): then a missing
// prerequisite fails the test instead of skipping it.
func Required() bool { return os.Getenv("REQUIRE_E2E") == "1" }

// Load returns the environment, or skips (fails under REQUIRE_E2E=1) the test, loudly, when
// this machine cannot run end-to-end tests.
func Load(t testing.TB) *Env {
	t.Helper()
	envOnce.Do(func() { envVal, envErr = load() })
	if envErr != nil {
		msg := "END-TO-END TESTS NOT RUN: " + envErr.Error() + " (run `make e2e` as root on Linux; it installs what is missing)"
		if Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return envVal
}

func load() (*Env, error) {
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("needs Linux, this is %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("needs root")
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	e := &Env{RepoRoot: root, Runc: os.Getenv("SG_RUNC"), CNIBin: os.Getenv("SG_CNI_BIN"), Registry: os.Getenv("SG_REGISTRY")}
	for _, l := range lines {
		c, err := containerdAt(l.line, l.env)
		if err != nil {
			return nil, err
		}
		e.Containerds = append(e.Containerds, c)
	}
	for name, p := range map[string]string{"SG_RUNC": e.Runc, "SG_CNI_BIN": filepath.Join(e.CNIBin, "bridge"), "SG_REGISTRY": e.Registry} {
		if _, err := os.Stat(p); p == "" || err != nil {
			return nil, fmt.Errorf("%s not set or missing (%q)", name, p)
		}
	}
	for _, tool := range []string{"ip", "nsenter", "iptables-nft", "iptables-legacy"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not installed", tool)
		}
	}
	if e.Crictl, err = crictl(); err != nil {
		return nil, err
	}
	bin, err := os.MkdirTemp("", "sg-e2e-bin-")
	if err != nil {
		return nil, err
	}
	binDir = bin
	build := func(out, pkg string, extraEnv ...string) (string, error) {
		p := filepath.Join(bin, out)
		cmd := exec.Command("go", "build", "-o", p, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), extraEnv...)
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("building %s: %v\n%s", pkg, err, b)
		}
		return p, nil
	}
	if e.Plugin = os.Getenv("SG_PLUGIN"); e.Plugin == "" {
		if e.Plugin, err = build("sandbox-guard", "./plugin"); err != nil {
			return nil, err
		}
	}
	if e.Pause, err = build("pause", "./test/pause", "CGO_ENABLED=0"); err != nil {
		return nil, err
	}
	if e.App, err = build("app", "./test/app", "CGO_ENABLED=0"); err != nil {
		return nil, err
	}
	return e, nil
}

// containerdAt finds the containerd of one line in the bin dir env names, and checks with
// `containerd --version` that it is of that line: a variable pointing at the wrong build would
// otherwise test one line twice under two names.
func containerdAt(line containerdconfig.Line, env string) (Containerd, error) {
	c := Containerd{Name: "containerd-" + line.String(), Major: line.Major(), Line: line, BinDir: os.Getenv(env)}
	if c.BinDir == "" {
		return c, fmt.Errorf("%s: %s is not set (test/tools/install-deps.sh builds every line and exports it)", c.Name, env)
	}
	bin := filepath.Join(c.BinDir, "containerd")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return c, fmt.Errorf("%s: %s=%s: %s --version: %v", c.Name, env, c.BinDir, bin, err)
	}
	// "containerd github.com/containerd/containerd/v2 2.3.7+unknown <commit>"
	fields := strings.Fields(string(out))
	if len(fields) < 3 {
		return c, fmt.Errorf("%s: %s --version answered %q", c.Name, bin, out)
	}
	c.Version = fields[2]
	got, _, err := containerdconfig.ParseRuntimeVersion(c.Version)
	if err != nil || got != line {
		return c, fmt.Errorf("%s: %s=%s holds containerd %s, not of the %s line", c.Name, env, c.BinDir, c.Version, line)
	}
	return c, nil
}

// crictlHowTo says how to get crictl; every crictl error ends with it.
const crictlHowTo = "set CRICTL to a crictl binary: `eval \"$(test/tools/install-deps.sh)\"` builds one into $SG_CACHE " +
	"(with ../shared/tools/build-crictl, else `go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0`) and exports CRICTL"

// crictl returns the real crictl named by env CRICTL, after asking it for its version, so a
// wrong path fails here with one message instead of in every CRI call.
func crictl() (string, error) {
	p := os.Getenv("CRICTL")
	if p == "" {
		return "", fmt.Errorf("crictl not found: CRICTL is not set; %s", crictlHowTo)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("crictl not found: CRICTL=%s: %v; %s", p, err, crictlHowTo)
	}
	out, err := exec.Command(p, "--version").CombinedOutput()
	answer, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil {
		if answer != "" {
			err = fmt.Errorf("%w: %s", err, answer)
		}
		return "", fmt.Errorf("crictl not usable: CRICTL=%s --version: %v; %s", p, err, crictlHowTo)
	}
	if !strings.HasPrefix(answer, "crictl version ") {
		return "", fmt.Errorf("CRICTL=%s is not crictl (--version answered %q); %s", p, answer, crictlHowTo)
	}
	return p, nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// ForEachContainerd runs fn as a subtest per containerd line (1.7, 2.2, 2.3, 2.4): every
// end-to-end test runs on all of them. The subtests run in parallel (go test's -parallel, by
// default the number of CPUs, bounds how many at once): each node has its own network
// namespace, directory, sockets, cgroup parent and runc root, so they share nothing but the
// machine. SG_E2E_SERIAL=1 runs them one after another. fn must not call t.Parallel itself, and
// whatever it shares with the other lines' subtests must be safe for concurrent use. Parallel
// subtests start only when the calling test function returns: code after ForEachContainerd runs
// before them (the caller's t.Cleanup functions run after them).
func ForEachContainerd(t *testing.T, fn func(t *testing.T, c Containerd)) {
	env := Load(t)
	serial := os.Getenv("SG_E2E_SERIAL") == "1"
	only := os.Getenv("SG_E2E_LINES") // e.g. "2.2,1.7" while developing; every line under REQUIRE_E2E=1
	if only != "" && Required() {
		t.Fatalf("SG_E2E_LINES=%s leaves lines out, and REQUIRE_E2E=1 asks for every one", only)
	}
	for _, c := range env.Containerds {
		if only != "" && !slices.Contains(strings.Split(only, ","), c.Line.String()) {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			if !serial {
				t.Parallel()
			}
			fn(t, c)
		})
	}
}

// ConfigDump runs `containerd --config main config dump` of this line (no daemon, no root
// needed) and returns the configuration containerd would run with, decoded, and what it logged
// while loading it (e.g. migration warnings). An error holds containerd's own message.
func (c Containerd) ConfigDump(main string) (map[string]any, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "containerd"), "--config", main, "config", "dump")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, stderr.String(), fmt.Errorf("%s config dump of %s: %v: %s", c.Name, main, err, strings.TrimSpace(stderr.String()))
	}
	var doc map[string]any
	if err := toml.Unmarshal([]byte(stdout.String()), &doc); err != nil {
		return nil, stderr.String(), fmt.Errorf("%s config dump of %s: %v\n%s", c.Name, main, err, stdout.String())
	}
	return doc, stderr.String(), nil
}

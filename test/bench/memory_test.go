package bench

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// Measurement 5's floor and breakdowns: the no-op NRI plugin (test/bench/noop-plugin, NRI's
// stub admitting every pod) pre-registered on the same node as sandbox-guard, where each
// megabyte of the plugin's memory goes (mappings, Go runtime), and what each dependency costs
// in the binary and in heap at start.

const noopPluginName = "90-nri-noop"

// buildTags are the build tags of `make build`, from the Makefile (BUILD_TAGS := ...).
func buildTags(root string) (string, error) {
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^BUILD_TAGS := (\S+)$`).FindSubmatch(mk)
	if m == nil {
		return "", fmt.Errorf("no BUILD_TAGS line in the Makefile")
	}
	return string(m[1]), nil
}

// goBuild builds pkg into out as `make build` does (static, stripped unless symbols).
func goBuild(root, pkg, out, tags string, symbols bool) error {
	ldflags := "-s -w"
	if symbols {
		ldflags = ""
	}
	args := []string{"build", "-trimpath", "-ldflags", ldflags, "-o", out}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v: %s", pkg, err, b)
	}
	return nil
}

// buildNoop builds the no-op plugin like the real one.
func buildNoop(root string) (string, error) {
	dir, err := os.MkdirTemp("", "sg-bench-noop-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "noop-plugin")
	return out, goBuild(root, "./test/bench/noop-plugin", out, "", false)
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// mappings is where a process's resident pages are, in kB: the binary's text, read-only data
// (with the pc-line tables), writable data, and anonymous memory.
type mappings struct{ text, rodata, data, anon int64 }

func readMappings(pid int) (mappings, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return mappings{}, err
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return mappings{}, err
	}
	defer func() { _ = f.Close() }()
	var m mappings
	var perms, path string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if strings.Contains(fields[0], "-") && len(fields) >= 5 && !strings.HasSuffix(fields[0], ":") {
			perms, path = fields[1], ""
			if len(fields) >= 6 {
				path = fields[5]
			}
			continue
		}
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "Anonymous:":
			m.anon += kb
		case "Rss:":
			if path != exe {
				continue
			}
			switch {
			case strings.HasPrefix(perms, "r-x"):
				m.text += kb
			case strings.HasPrefix(perms, "r--"):
				m.rodata += kb
			case strings.HasPrefix(perms, "rw"):
				m.data += kb
			}
		}
	}
	return m, sc.Err()
}

// cpuTime is the user and system CPU time pid has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil // USER_HZ is 100 on Linux
}

// goMemstats reads the Go runtime's memory statistics from the plugin's /metrics, inside the
// node's network namespace.
func goMemstats(n *harness.Node, addr string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	cl := n.NS.HTTPClient()
	defer cl.CloseIdleConnections()
	resp, err := cl.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		name, val, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || strings.HasPrefix(name, "#") || !strings.HasPrefix(name, "go_") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out, nil
}

// moduleSize is what one module (or the standard library) puts into the binary.
type moduleSize struct {
	module string
	bytes  int64 // symbol bytes in file-backed sections: code, read-only and writable data
}

// sizesByModule builds the plugin with symbols (the tags of `make build`) and adds up its
// file-backed symbols by the module of their package. Symbols leave out what the linker
// generates per function (pc-line tables, type metadata of the whole program), about as much
// again, in proportion to code.
func sizesByModule(root, tags string) (mods []moduleSize, total int64, err error) {
	dir, err := os.MkdirTemp("", "sg-bench-syms-")
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	bin := filepath.Join(dir, "sandbox-guard")
	if err := goBuild(root, "./plugin", bin, tags, true); err != nil {
		return nil, 0, err
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return nil, 0, err
	}
	var paths []string
	for _, d := range info.Deps {
		paths = append(paths, d.Path)
	}
	paths = append(paths, info.Main.Path)
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) }) // longest module first
	f, err := elf.Open(bin)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = f.Close() }()
	syms, err := f.Symbols()
	if err != nil {
		return nil, 0, err
	}
	by := map[string]int64{}
	for _, s := range syms {
		if int(s.Section) <= 0 || int(s.Section) >= len(f.Sections) || s.Size == 0 {
			continue
		}
		sec := f.Sections[s.Section]
		if sec.Type == elf.SHT_NOBITS || sec.Flags&elf.SHF_ALLOC == 0 {
			continue // bss: no pages in the file
		}
		pkg := symbolPackage(s.Name)
		mod := "standard library"
		if strings.HasPrefix(pkg, "go:") || pkg == "runtime" {
			mod = "Go runtime tables (go:*) and runtime"
		}
		for _, p := range paths {
			if pkg == p || strings.HasPrefix(pkg, p+"/") {
				mod = p
				break
			}
		}
		by[mod] += int64(s.Size)
		total += int64(s.Size)
	}
	for m, b := range by {
		mods = append(mods, moduleSize{m, b})
	}
	slices.SortFunc(mods, func(a, b moduleSize) int { return int(b.bytes - a.bytes) })
	return mods, total, nil
}

// symbolPackage is the import path of a Go symbol's package ("type:*foo/bar.T" -> "foo/bar").
func symbolPackage(name string) string {
	for _, pre := range []string{"type:.eq.", "type:.hash.", "type:", "go:itab."} {
		name = strings.TrimPrefix(name, pre)
	}
	name = strings.TrimLeft(name, "*[]0123456789")
	if strings.HasPrefix(name, "go:") {
		return "go:"
	}
	cut := len(name)
	for _, sep := range "([{ ," {
		if i := strings.IndexRune(name, sep); i >= 0 && i < cut {
			cut = i
		}
	}
	head := name[:cut]
	slash := strings.LastIndexByte(head, '/')
	if dot := strings.IndexByte(head[slash+1:], '.'); dot >= 0 {
		return head[:slash+1+dot]
	}
	return head
}

// initAlloc is one package's heap allocation during the program's initialisation.
type initAlloc struct {
	pkg   string
	bytes int64
}

// initAllocations runs bin with GODEBUG=inittrace=1 and returns what each package's
// initialisation allocated, the biggest first, and the total.
func initAllocations(bin string) ([]initAlloc, int64, error) {
	cmd := exec.Command(bin, "version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, 0, fmt.Errorf("%s version: %v: %s", bin, err, out)
	}
	// init github.com/x/y @0.5 ms, 0.1 ms clock, 4096 bytes, 12 allocs
	var all []initAlloc
	var total int64
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != "init" || f[8] != "bytes," {
			continue
		}
		n, err := strconv.ParseInt(f[7], 10, 64)
		if err != nil {
			continue
		}
		all = append(all, initAlloc{f[1], n})
		total += n
	}
	if len(all) == 0 {
		return nil, 0, fmt.Errorf("no inittrace lines from %s", bin)
	}
	slices.SortFunc(all, func(a, b initAlloc) int { return int(b.bytes - a.bytes) })
	return all, total, nil
}

func mibOf(bytes int64) string { return fmt.Sprintf("%.1f MiB", float64(bytes)/(1<<20)) }

func kibOf(bytes int64) string { return fmt.Sprintf("%d KiB", (bytes+512)/1024) }

// ratio is a/b with one decimal, or "-" when b is unknown.
func ratio(a, b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fx", float64(a)/float64(b))
}

// cutsOfIssue14 is what each cut of issue 14 saved, measured when it was made (stripped binary
// from ls, heap at start from GODEBUG=inittrace=1, memory of the pre-registered plugin on a
// containerd 2.2 node 30 s after start); the tables above measure the result in this run.
const cutsOfIssue14 = `What the cuts of issue 14 saved, each measured when it was made on this machine (stripped binary by ` + "`ls -l`" + `,
heap at start by ` + "`GODEBUG=inittrace=1`" + `, the pre-registered plugin's /proc/<pid>/status 30 s after start):

| cut | binary | heap at start | idle memory |
|---|---|---|---|
| build tags ` + "`grpcnotrace`" + ` (gRPC's x/net/trace and its html/template, whose reflection by method name kept every exported method of every linked type) and ` + "`no_gogo`" + ` (typeurl's gogo handler; nothing registers gogo types) | 28.6 -> 20.6 MiB | | VmRSS 41.6 -> 34.1 MiB (RssFile 28.0 -> 20.4) |
| own LabelSelector type compiled with k8s.io/apimachinery/pkg/labels instead of metav1 and the API machinery behind it | 20.6 -> 19.0 MiB | -110 KB | |
| the node's AWS credential chain from the SDK's providers instead of config.LoadDefaultConfig (which links SSO, SSO-OIDC and console-login clients) | 19.0 -> 17.9 MiB | -400 KB | |
| configuration patterns without counted repetition ({0,127} compiles into 127 copies) | | 168 -> 13 KB for internal/config | |
| pre-registered runtime bounds: GOGC=50, soft memory limit 12 MiB, memory profiling off | | | RssAnon 13.4 -> 7.4 MiB |

Weighed and not done: containerd's Go client replaced by its service proxies (-0.54 MiB for some 200 lines copied from the
client); Prometheus' default Go and process collectors (client_golang's own init creates and registers them whatever the
plugin's registry holds: nothing to save, and they are documented metrics); the ECR service client (its schema tables are
0.5 MB of heap at start and about 1.1 MiB of binary; replacing it means hand-writing SigV4 JSON calls and the endpoint rules
of every partition, FIPS and dual-stack).

Where a memory goal is not met, why (from the tables above):
- **Stripped binary <= 16 MiB.** The floor (NRI's stub: ttrpc, protobuf, the NRI API) is a quarter of it. What sandbox-guard adds
  is, by module, the standard library's share of TLS, HTTP and JSON, gRPC and protobuf for containerd's API, containerd's client with
  its pull path (zstd, the docker resolver, OpenTelemetry through containerd's tracing), the ECR and STS clients with smithy, TOML and
  YAML parsers and the Prometheus client. containerd's client and the ECR SDK are required libraries of this project; the cuts left
  (the "weighed" list) save about 1.6 MiB together, not the 2 MiB above the goal, at the cost of hand-written protocol code.
- **Idle VmRSS <= 16 MiB.** RssFile alone is about the binary's size (fault-around, below), so VmRSS cannot fall under the
  binary's size; it follows the binary goal.
- **Idle RssAnon <= 6 MiB.** The heap in use is mostly what package initialisers allocate and keep (the inittrace table: the
  ECR schema tables, compiled reference patterns, API descriptors), plus goroutine stacks and the GC's own metadata; the workers'
  state is small. Bounding the runtime (GOGC=50, the soft limit) took it from 13.4 MiB to the figure above.
- **Peak <= 20 MiB.** The peak is reached in the first seconds (the sandbox image's pull, unpack and local copy; see the note
  below), with RssFile already at the binary's size; pod churn does not move it.
`

package e2e

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/standby"
	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// Disk and registry-configuration faults (README, "Disk and registry-configuration faults"):
// for each, what is admitted, logged and lost.

// A full disk under the plugin's state directory and under its log file, from the plugin's
// start: the gate answers as always (enforce rejects on the failing check, admits once it
// passes); the log lines are lost and counted; the local copy is not kept and the bridge's
// entry is written but not recorded, both visible in check and the metrics. Once space is
// free, the copy is saved, the entry recorded and the log written again; what was lost stays
// lost.
func TestFaultFullDiskForStateDirAndLog(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		var stateDir, logFile, marker, config string
		var fillers []string
		n := harness.StartNode(t, env, c, harness.NodeOptions{PluginConfig: func(n *harness.Node) string {
			stateDir, logFile, marker = filepath.Join(n.Dir, "sg-state"), filepath.Join(n.Dir, "log", "sandbox-guard.log"), filepath.Join(n.Dir, "ready")
			// Room for the local copy (the pause image's archive is about 1.4 MB) and for the
			// log once the fillers are gone.
			for dir, size := range map[string]string{stateDir: "8m", filepath.Dir(logFile): "1m"} {
				mountTmpfs(t, dir, size)
				fillers = append(fillers, fillUp(t, dir))
			}
			fake := n.StartFakeECR(12 * time.Hour)
			config = fmt.Sprintf(`mode: enforce
log: {file: %s, level: debug}
containerd: {address: %s, configFile: %s}
stateDir: %s
preset: none
refresh: {interval: 200ms}
sandboxImage: auto
keeper: {reconcileInterval: 1s}
checks:
  - name: marker
    file: {path: %s}
    hint: the test has not written its marker yet
`, logFile, n.Socket, n.ConfigFile, stateDir, marker) + fake.PluginECRConfig(n) + "  credentialBridge: true\n"
			return config
		}})
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("plugin log (last lines):\n%s", tail(readFile(t, logFile), 40))
			}
		})
		imagePinned(t, n, 30*time.Second, "sandbox image present and pinned")
		// The standing watch's lock needs no space: it is held all the same.
		harness.Eventually(t, 10*time.Second, "stand-by lock held on a full disk", func() error {
			h, err := standby.Probe(standby.Path(stateDir))
			if err == nil && !h.Held {
				err = errors.New("not held")
			}
			return err
		})

		// Admitted: as always.
		if _, err := n.CRI.RunP(harness.Pod{Name: "web-full"}); err == nil || !strings.Contains(err.Error(), "marker") {
			t.Fatalf("runp with the marker missing = %v, want a rejection naming the check", err)
		}

		// Logged: nothing, and counted.
		harness.Eventually(t, 10*time.Second, "log lines counted as dropped", func() error {
			if v := metricSum(t, n, "sandbox_guard_log_lines_dropped_total"); v == 0 {
				return errors.New("sandbox_guard_log_lines_dropped_total is 0")
			}
			return nil
		})
		if log := readFile(t, logFile); strings.Contains(log, "web-full") {
			t.Fatalf("the log on a full disk holds the rejection:\n%s", log)
		}

		// Lost: the local copy (not kept) and the bridge's record of its entry (written, not
		// recorded); both said by the metrics and check.
		harness.Eventually(t, 10*time.Second, "local copy reported failing", func() error {
			if v := metricSum(t, n, "sandbox_guard_image_local_copy_failing", `role="sandbox image"`); v != 1 {
				return fmt.Errorf("sandbox_guard_image_local_copy_failing = %v; metrics:\n%s", v, scrape(n))
			}
			return nil
		})
		if tars, _ := filepath.Glob(filepath.Join(stateDir, "images", "*.tar")); len(tars) != 0 {
			t.Fatalf("a local copy on a full disk: %v", tars)
		}
		waitBridgeEntry(t, n)
		if _, err := os.Stat(filepath.Join(stateDir, "credential-bridge.json")); !os.IsNotExist(err) {
			t.Fatalf("the bridge's ledger on a full disk (%v)", err)
		}
		rows := runCheck(t, n, config)
		if r := rows["images"]; !strings.Contains(r.Detail, "local copy not kept: no local copy saved in "+stateDir) {
			t.Errorf("images row %+v, want it to say no local copy is kept", r)
		}
		if r := rows["credential-bridge"]; !strings.Contains(r.Detail, "not recorded") {
			t.Errorf("credential-bridge row %+v, want it to say the entry is not recorded", r)
		}

		// Admitted once the check passes, disk still full.
		writeMarker(t, marker)
		harness.Eventually(t, 10*time.Second, "pod admitted with the marker", func() error {
			id, err := n.CRI.RunP(harness.Pod{Name: "web-ok"})
			if err == nil {
				n.CRI.Remove(id)
			}
			return err
		})

		// Space again: the copy is saved, the entry recorded, the log written; what was lost
		// stays lost.
		for _, f := range fillers {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
		harness.Eventually(t, 20*time.Second, "local copy saved once there is space", func() error {
			tars, _ := filepath.Glob(filepath.Join(stateDir, "images", "*.tar"))
			if len(tars) != 1 || metricSum(t, n, "sandbox_guard_image_local_copy_failing", `role="sandbox image"`) != 0 {
				return fmt.Errorf("archives %v", tars)
			}
			return nil
		})
		harness.Eventually(t, 30*time.Second, "bridge entry recorded once there is space", func() error {
			b, err := os.ReadFile(filepath.Join(stateDir, "credential-bridge.json"))
			if err != nil || !strings.Contains(string(b), n.Registry.Host) {
				return fmt.Errorf("ledger %q (%v)", b, err)
			}
			return nil
		})
		if err := os.Remove(marker); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 10*time.Second, "a rejection logged once there is space", func() error {
			if _, err := n.CRI.RunP(harness.Pod{Name: "web-after"}); err == nil {
				return errors.New("runp admitted without the marker")
			}
			if !strings.Contains(readFile(t, logFile), "default/web-after") {
				return errors.New("the rejection is not in the log")
			}
			return nil
		})
		if log := readFile(t, logFile); strings.Contains(log, "web-full") || strings.Contains(log, "panicked") {
			t.Errorf("the log holds what was logged while the disk was full, or a panic:\n%s", log)
		}
	})
}

// containerd's hosts directory read-only (a container's /etc/containerd mounted read-only):
// the bridge says so in check, in the log once (not at every retry) and in its metric; the
// keeper's own pulls, with its own token, still repair the image; nothing panics. Made writable
// again, the entry is written at the next retry.
func TestFaultReadOnlyCertsDir(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{})
		fake := n.StartFakeECR(12 * time.Hour)
		before := snapshotDir(t, n.CertsDir)
		setReadOnly := bindReadOnly(t, n.CertsDir)
		config := n.PluginBase() + fake.PluginECRConfig(n) + "  credentialBridge: true\nmode: enforce\npreset: none\nsandboxImage: auto\nkeeper: {localCopy: false}\n"
		p := n.StartExternalPlugin(config)

		const refusals = 3
		harness.Eventually(t, 30*time.Second, "the bridge refused at every retry", func() error {
			if v := metricSum(t, n, "sandbox_guard_bridge_writes_total", `outcome="read-only"`); v < refusals {
				return fmt.Errorf("%v read-only outcomes", v)
			}
			return nil
		})
		if v := bridgeEffective(n); v != "0" {
			t.Errorf("sandbox_guard_credential_bridge_effective = %q, want 0 while nothing can be written", v)
		}
		if got := strings.Count(p.Log(), "credential bridge not refreshed"); got != 1 || !strings.Contains(p.Log(), "read-only file system") {
			t.Errorf("%d log lines for %d refusals, want 1 saying read-only; log:\n%s", got, refusals, p.Log())
		}
		r := runCheck(t, n, config)["credential-bridge"]
		if r.OK || !strings.Contains(r.Detail, "read-only file system") || !strings.Contains(r.Detail, "mount it writable") {
			t.Errorf("credential-bridge row %+v, want not OK, saying read-only and the fix", r)
		}
		if after := snapshotDir(t, n.CertsDir); after != before {
			t.Fatalf("the read-only hosts directory changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}

		// The keeper's own pulls do not need the bridge.
		if out, err := n.Ctr("images", "rm", n.SandboxImage); err != nil {
			t.Fatalf("ctr images rm: %v: %s", err, out)
		}
		imagePinned(t, n, 30*time.Second, "sandbox image repaired by the keeper")
		if strings.Contains(p.Log(), "panicked") || metricSum(t, n, "sandbox_guard_panics_total") != 0 {
			t.Errorf("a panic; log:\n%s", p.Log())
		}

		setReadOnly(false)
		waitBridgeEntryWithin(t, n, 30*time.Second)
		harness.Eventually(t, 5*time.Second, "the bridge effective once written", func() error {
			if v := bridgeEffective(n); v != "1" {
				return fmt.Errorf("sandbox_guard_credential_bridge_effective = %q", v)
			}
			return nil
		})
		harness.Eventually(t, 5*time.Second, "recovery logged", func() error {
			if !strings.Contains(p.Log(), "credential bridge refreshed again") {
				return errors.New("not yet")
			}
			return nil
		})
	})
}

// The ECR host's hosts.toml sends its pulls to a server that is not the registry (a cache
// over plain http): the bridge writes no token there and check says why; containerd's own pull
// of the sandbox image, with the plugin stopped, goes to that server, which never sees the
// token.
func TestFaultHostsTomlSendsTheECRHostElsewhere(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{})
		// A pull-through cache on loopback, answering anonymous pulls (it adds the registry's
		// credentials itself) and recording every Authorization header it is sent.
		cache := n.StartFront(harness.FrontOptions{InjectAuth: true})
		const token = "ecr-token-not-for-the-cache"
		fake := n.StartFakeECR(12 * time.Hour)
		fake.SetCredentials("AWS", token)
		bridged := basicAuth("AWS", token)
		operator := fmt.Sprintf("# the operator sends %s's pulls to a cache\nserver = \"http://%s\"\n", n.Registry.Host, cache.Host)
		if err := os.WriteFile(n.HostsToml(), []byte(operator), 0o644); err != nil {
			t.Fatal(err)
		}
		config := n.PluginBase() + fake.PluginECRConfig(n) + "  credentialBridge: true\nmode: enforce\npreset: none\nsandboxImage: auto\nkeeper: {localCopy: false}\n"
		p := n.StartExternalPlugin(config)
		harness.Eventually(t, 20*time.Second, "the bridge refused", func() error {
			if v := metricSum(t, n, "sandbox_guard_bridge_writes_total", `outcome="refused"`); v < 1 {
				return errors.New("no refused outcome yet")
			}
			return nil
		})
		if v := bridgeEffective(n); v != "0" {
			t.Errorf("sandbox_guard_credential_bridge_effective = %q, want 0: no token is written", v)
		}
		if !strings.Contains(p.Log(), "not to the ECR registry itself") {
			t.Errorf("the log does not say why; log:\n%s", p.Log())
		}
		r := runCheck(t, n, config)["credential-bridge"]
		if r.OK || !strings.Contains(r.Detail, "not to the ECR registry itself") || !strings.Contains(r.Detail, cache.Host) {
			t.Errorf("credential-bridge row %+v, want not OK naming the cache", r)
		}
		if got := readFile(t, n.HostsToml()); got != operator {
			t.Fatalf("hosts.toml changed:\n%s", got)
		}

		p.Stop()
		deleteSandboxImage(t, n)
		id := n.CRI.MustRunP(harness.Pod{Name: "web-1"})
		n.CRI.Remove(id)
		if cache.Requests() == 0 {
			t.Fatal("containerd's own pull never reached the cache; the test proves nothing")
		}
		if got := cache.Authorizations()[bridged]; got != 0 {
			t.Errorf("the cache received the ECR token %d times", got)
		}
		if strings.Contains(p.Log(), token) || strings.Contains(p.Log(), bridged) {
			t.Error("the plugin log holds the token")
		}
	})
}

// mountTmpfs mounts a tmpfs of size at dir (created) until the test ends.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		t.Fatalf("mounting a tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
}

// fillUp writes a file into dir until its file system is full, checks that not one more byte
// fits, and returns the file's path.
func fillUp(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err = f.Write(buf); err != nil {
			break
		}
	}
	_ = f.Close() // the file is what it is; the probe below says whether the disk is full
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s: %v", dir, err)
	}
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, []byte("x"), 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("%s not full: one more byte gave %v", dir, err)
	}
	_ = os.Remove(probe)
	return path
}

// bindReadOnly makes dir read-only with a read-only bind mount on itself until the test ends;
// the function it returns switches between read-only and writable.
func bindReadOnly(t *testing.T, dir string) func(readOnly bool) {
	t.Helper()
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount of %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	set := func(readOnly bool) {
		flags := uintptr(syscall.MS_BIND | syscall.MS_REMOUNT)
		if readOnly {
			flags |= syscall.MS_RDONLY
		}
		if err := syscall.Mount("", dir, "", flags, ""); err != nil {
			t.Fatalf("remounting %s (read-only %v): %v", dir, readOnly, err)
		}
	}
	set(true)
	if err := os.WriteFile(filepath.Join(dir, "probe"), nil, 0o600); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("%s still writable: %v", dir, err)
	}
	return set
}

// metricSum scrapes the plugin's metrics and adds up the samples of name whose labels contain every one of labels; 0 when there are none.
func metricSum(t *testing.T, n *harness.Node, name string, labels ...string) float64 {
	t.Helper()
	var sum float64
	for line := range strings.Lines(scrape(n)) {
		line = strings.TrimSpace(line)
		i := strings.LastIndexByte(line, ' ') // label values may hold spaces ("sandbox image")
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		series, value := line[:i], line[i+1:]
		if metric, _, _ := strings.Cut(series, "{"); metric != name {
			continue
		}
		matches := true
		for _, l := range labels {
			matches = matches && strings.Contains(series, l)
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil && matches {
			sum += v
		}
	}
	return sum
}

// bridgeEffective is sandbox_guard_credential_bridge_effective for the node's registry: "1",
// "0", or "" when there is no such series.
func bridgeEffective(n *harness.Node) string {
	prefix := `sandbox_guard_credential_bridge_effective{host="` + n.Registry.Host + `"} `
	for line := range strings.Lines(scrape(n)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			return v
		}
	}
	return ""
}

// scrape returns the plugin's metrics (127.0.0.1:9809 in the node's namespace); "" while it
// does not serve them.
func scrape(n *harness.Node) string {
	resp, err := n.NS.HTTPClient().Get("http://127.0.0.1:9809/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return ""
	}
	return string(body)
}

// runCheck runs `check -o json` with config (in the node's namespace) and returns its rows. Its
// exit code says whether the node is ready, which is not what these tests ask.
func runCheck(t *testing.T, n *harness.Node, config string) map[string]checkRow {
	t.Helper()
	file := filepath.Join(n.Dir, fmt.Sprintf("check-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := n.NS.Command(n.Env.Plugin, "check", "--config", file, "-o", "json").Output()
	if len(out) == 0 {
		t.Fatalf("check: %v", err)
	}
	return checkRows(t, out)
}

func writeMarker(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// waitBridgeEntryWithin waits until the registry's hosts.toml carries the bridge's header.
func waitBridgeEntryWithin(t *testing.T, n *harness.Node, within time.Duration) {
	t.Helper()
	harness.Eventually(t, within, "credential bridge entry", func() error {
		if b := readFile(t, n.HostsToml()); !strings.Contains(b, "Authorization = [") {
			return fmt.Errorf("no Authorization entry yet:\n%s", b)
		}
		return nil
	})
}

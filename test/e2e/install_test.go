package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
	"github.com/sandbox-guard/sandbox-guard/internal/install"
	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// runInstall runs `sandbox-guard install` for a node laid out under n.Root. --paths-root makes the
// drop-in name the node's real (temporary) directories, so that this machine's containerd finds
// the plugin there. It returns stdout and fails the test unless the exit code is want.
func runInstall(t *testing.T, n *harness.RootNode, want int, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(n.Env.Plugin, append([]string{"install", "--root", n.Root, "--paths-root", n.Root}, args...)...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != want {
		t.Fatalf("sandbox-guard install %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

// fileStates records content, mode and mtime of the files under dir.
func fileStates(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || info.Mode()&os.ModeSocket != 0 {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[p] = fmt.Sprintf("%v %d %x", info.Mode(), info.ModTime().UnixNano(), b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A node whose main containerd configuration only imports drop-ins: `sandbox-guard install`
// switches NRI on with its drop-in (off by default on 1.7) and containerd starts the installed
// plugin at boot, which then gates pods with the installed configuration.
func TestInstallPreRegistersThePlugin(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		var marker, cfgFile string
		n := harness.StartNodeWithConfig(t, env, c, harness.NodeOptions{}, func(n *harness.RootNode) {
			must(t, os.WriteFile(n.ConfigFile, []byte(n.ImportingMainConfig()), 0o644))
			// The machine's settings (CRI, runc, CNI, registry) in a drop-in of their own, apart
			// from the NRI drop-in: containerd 1.7 replaces whole tables per drop-in.
			must(t, os.WriteFile(filepath.Join(n.ConfigD(), "00-test.toml"), []byte(n.TestDropIn()), 0o644))

			marker = filepath.Join(n.Dir, "ready")
			cfgFile = filepath.Join(n.Dir, "plugin-config.yaml")
			must(t, os.WriteFile(cfgFile, []byte(fmt.Sprintf(`mode: enforce
%spreset: none
refresh: {interval: 200ms}
checks:
  - name: marker
    file: {path: %s}
    hint: the test has not written its marker yet
`, n.PluginBase(), marker)), 0o644))

			stdout, stderr := runInstall(t, n, 0, "--config", cfgFile)
			for _, f := range []string{"opt/nri/plugins/10-sandbox-guard", "etc/nri/conf.d/10-sandbox-guard.conf", "etc/containerd/config.d/sandbox-guard-nri.toml"} {
				if !strings.Contains(stdout, "created       "+filepath.Join(n.Root, f)+"\n") {
					t.Errorf("install output lacks %q:\n%s", "created "+f, stdout)
				}
			}
			if strings.Contains(stderr, "WARNING") || !strings.Contains(stderr, "starts sandbox-guard at its next start") {
				t.Errorf("install stderr:\n%s", stderr)
			}
			// The drop-in is in the format of the main configuration, the line's own (version 2
			// for 1.7, 3 for 2.2, 4 for 2.3 and 2.4), and containerd loads all of it as it is.
			wantVersion := fmt.Sprintf("\nversion = %d\n", c.ConfigVersion())
			if b := readFile(t, filepath.Join(n.ConfigD(), "sandbox-guard-nri.toml")); !strings.Contains(b, wantVersion) {
				t.Errorf("drop-in for %s lacks %q", c.Name, strings.TrimSpace(wantVersion))
			}
			dump, logged, err := c.ConfigDump(n.ConfigFile)
			if err != nil {
				t.Fatal(err)
			}
			wantNRIOn(t, dump, n.Root)
			if strings.Contains(logged, "migrated") {
				t.Errorf("%s migrated a file of the node's configuration:\n%s", c.Name, logged)
			}

			// Twice: nothing changes, not even an mtime.
			before := fileStates(t, n.Root)
			stdout, stderr = runInstall(t, n, 0, "--config", cfgFile)
			if got := strings.Count(stdout, "unchanged "); got != 3 || strings.Contains(stderr, "WARNING") {
				t.Errorf("second install: %d unchanged, want 3\nstdout:\n%s\nstderr:\n%s", got, stdout, stderr)
			}
			if after := fileStates(t, n.Root); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("second install changed files:\nbefore %v\nafter  %v", before, after)
			}
		})

		// containerd started the plugin from the installed files at boot.
		_, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
		wantRejection(t, err, "default/web-1", "marker:", "does not exist", "the test has not written its marker yet")
		if log := readFile(t, n.PluginLog); !strings.Contains(log, "started by containerd") {
			t.Errorf("the plugin log does not show a start by containerd:\n%s", log)
		}
		must(t, os.WriteFile(marker, nil, 0o644))
		admitted(t, n.Node, "web-1", 5*time.Second)
		// What the installer DaemonSet's readiness probe asks: the plugin containerd runs answers
		// on the node's loopback.
		wantHTTP(t, n.NS, "/readyz", 200)

		// An edited configuration is kept; the installer says so and changes nothing.
		conf := filepath.Join(n.Root, "etc/nri/conf.d/10-sandbox-guard.conf")
		edited := readFile(t, conf) + "settleTime: 1s\n"
		must(t, os.WriteFile(conf, []byte(edited), 0o644))
		stdout, _ := runInstall(t, n, 0, "--config", cfgFile)
		if !strings.Contains(stdout, "kept (edited) "+conf+": differs") {
			t.Errorf("install does not report the kept edit:\n%s", stdout)
		}
		if readFile(t, conf) != edited {
			t.Error("install overwrote an edited configuration without --force")
		}
	})
}

// Without an imports line in the main configuration the drop-in is never loaded: install says
// so, and that NRI stays off, so the plugin will not run; and indeed containerd does not start it.
func TestInstallWarnsWithoutImports(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNodeWithConfig(t, env, c, harness.NodeOptions{}, func(n *harness.RootNode) {
			// The machine's settings in the main file itself, NRI off, and no imports line. (NRI
			// off also keeps containerd 2.x from using its default NRI paths on this machine.)
			main := n.TestDropIn() + "\n[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true\n"
			must(t, os.WriteFile(n.ConfigFile, []byte(main), 0o644))
		})
		_, stderr := runInstall(t, n, 0)
		for _, want := range []string{"WARNING: containerd does not load " + filepath.Join(n.ConfigD(), "sandbox-guard-nri.toml"),
			fmt.Sprintf("imports = [%q]", filepath.Join(n.ConfigD(), "*.toml")),
			"WARNING: NRI stays disabled: disable = true in " + n.ConfigFile,
			"WARNING: containerd will NOT start sandbox-guard"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("install stderr lacks %q:\n%s", want, stderr)
			}
		}
		// And it is right: after a restart containerd has not started the plugin.
		n.Restart()
		id := n.CRI.MustRunP(harness.Pod{Name: "web-2"})
		n.CRI.Remove(id)
		if _, err := os.Stat(n.PluginLog); err == nil {
			t.Errorf("the plugin ran although install said it would not:\n%s", readFile(t, n.PluginLog))
		}
	})
}

// wantNRIOn fails the test unless the configuration containerd dumped has NRI on, with the
// plugin directories and socket of a node laid out under root (where install --paths-root root
// points them).
func wantNRIOn(t *testing.T, dump map[string]any, root string) {
	t.Helper()
	plugins, _ := dump["plugins"].(map[string]any)
	nri, _ := plugins["io.containerd.nri.v1.nri"].(map[string]any)
	want := map[string]any{"disable": false, "plugin_path": filepath.Join(root, install.PluginDir),
		"plugin_config_path": filepath.Join(root, install.ConfigDir), "socket_path": filepath.Join(root, install.NRISocket)}
	for k, v := range want {
		if nri[k] != v {
			t.Errorf("containerd config dump: NRI %s = %v, want %v (NRI table %v)", k, nri[k], v, nri)
		}
	}
}

// sandboxImage is the sandbox image in a configuration containerd dumped.
func sandboxImage(dump map[string]any, c harness.Containerd) any {
	plugins, _ := dump["plugins"].(map[string]any)
	if c.Major == 1 {
		cri, _ := plugins["io.containerd.grpc.v1.cri"].(map[string]any)
		return cri["sandbox_image"]
	}
	images, _ := plugins["io.containerd.cri.v1.images"].(map[string]any)
	pinned, _ := images["pinned_images"].(map[string]any)
	return pinned["sandbox"]
}

// Every main configuration version each line reads (1.7: 2; 2.2: 2 and 3; 2.3 and 2.4: 2, 3
// and 4), with the sandbox image set the way that version spells it: `sandbox-guard install`,
// asking the real containerd binary for its version, writes a drop-in that this containerd
// loads (`containerd config dump`: NRI on at the plugin's paths) without losing the main
// configuration's settings. The node's own format is also started for real, with the plugin
// running, by TestInstallPreRegistersThePlugin.
func TestInstallDropInLoadsWithEveryMainVersion(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		const image = "example.com/pause:main-config"
		for version := 2; version <= c.ConfigVersion(); version++ {
			t.Run(fmt.Sprintf("main-v%d", version), func(t *testing.T) {
				root := t.TempDir()
				main, configD := filepath.Join(root, install.ContainerdConfig), filepath.Join(root, install.DropInDir)
				cri := fmt.Sprintf("[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = %q\n", image)
				if version == 2 {
					cri = fmt.Sprintf("[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = %q\n", image)
				}
				must(t, os.MkdirAll(filepath.Dir(main), 0o755))
				must(t, os.WriteFile(main, []byte(fmt.Sprintf("version = %d\nimports = [%q]\n%s", version, filepath.Join(configD, "*.toml"), cri)), 0o644))

				bin := filepath.Join(c.BinDir, "containerd")
				cmd := exec.Command(env.Plugin, "install", "--root", root, "--paths-root", root, "--containerd-bin", bin)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("sandbox-guard install: %v\n%s", err, out)
				}
				wantLine := fmt.Sprintf("containerd %s (`%s --version`: %s; drop-in version %d) starts sandbox-guard", c.Line, bin, c.Version, version)
				if !strings.Contains(string(out), wantLine) || strings.Contains(string(out), "WARNING") {
					t.Errorf("install output lacks %q or warns:\n%s", wantLine, out)
				}
				dump, logged, err := c.ConfigDump(main)
				if err != nil {
					t.Fatal(err)
				}
				wantNRIOn(t, dump, root)
				if got := sandboxImage(dump, c); got != image {
					t.Errorf("sandbox image %v with the drop-in, want the main configuration's %s; containerd logged:\n%s", got, image, logged)
				}

				// Why install does not simply write version 3 for every 2.x: containerd 2.2 then
				// skips migrating a version-2 main configuration's CRI tables.
				if c.Line == containerdconfig.Line22 && version == 2 {
					v3, err := install.RenderDropInVersion(3, root)
					must(t, err)
					must(t, os.WriteFile(filepath.Join(configD, install.DropInName), v3, 0o644))
					dump, _, err := c.ConfigDump(main)
					if err != nil {
						t.Fatal(err)
					}
					if got := sandboxImage(dump, c); got == image {
						t.Errorf("%s kept the sandbox image with a version-3 drop-in after a version-2 main configuration: install's rule for it is not needed", c.Name)
					}
				}
			})
		}
	})
}

// wantHTTP waits until GET http://127.0.0.1:9809<path> in the node's network namespace (where
// the DaemonSet's probes go: hostNetwork) answers code.
func wantHTTP(t *testing.T, ns *harness.NetNS, path string, code int) {
	t.Helper()
	client := ns.HTTPClient()
	harness.Eventually(t, 10*time.Second, "GET 127.0.0.1:9809"+path, func() error {
		resp, err := client.Get("http://127.0.0.1:9809" + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != code {
			return fmt.Errorf("%s answered %d %q, want %d", path, resp.StatusCode, body, code)
		}
		return nil
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// `install --watch` (the installer DaemonSet's loop) repairs what changes on the node: a deleted
// binary, and with --force an edited configuration, keeping a backup; it stops cleanly on SIGTERM.
func TestInstallWatchRepairs(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		root := t.TempDir()
		main := filepath.Join(root, "etc/containerd/config.toml")
		must(t, os.MkdirAll(filepath.Dir(main), 0o755))
		must(t, os.WriteFile(main, []byte(fmt.Sprintf("version = %d\nimports = [%q]\n", c.ConfigVersion(), filepath.Join(root, "etc/containerd/config.d/*.toml"))), 0o644))
		cmd := exec.Command(env.Plugin, "install", "--root", root, "--paths-root", root, "--force", "--watch", "100ms")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		must(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = <-done // killed: the exit status says no more than that
			}
		})
		bin := filepath.Join(root, "opt/nri/plugins/10-sandbox-guard")
		conf := filepath.Join(root, "etc/nri/conf.d/10-sandbox-guard.conf")
		exists := func(p string) func() error {
			return func() error { _, err := os.Stat(p); return err }
		}
		// The first round writes the configuration, the drop-in, then the binary: once the
		// binary exists, the configuration read here is the installed one.
		harness.Eventually(t, 5*time.Second, "first install", exists(bin))
		original := readFile(t, conf)
		if original == "" {
			t.Fatal("the first install left the configuration empty")
		}

		must(t, os.Remove(bin))
		harness.Eventually(t, 5*time.Second, "the deleted binary is back", exists(bin))
		must(t, os.WriteFile(conf, []byte(original+"settleTime: 3s\n"), 0o644))
		harness.Eventually(t, 5*time.Second, "the edited configuration is replaced", func() error {
			if readFile(t, conf) != original {
				return fmt.Errorf("still edited; install said:\n%s", out.String())
			}
			return nil
		})
		backups, _ := filepath.Glob(conf + ".bak-*")
		if len(backups) != 1 || !strings.HasSuffix(readFile(t, backups[0]), "settleTime: 3s\n") {
			t.Errorf("backups %v: want one holding the edit", backups)
		}

		must(t, cmd.Process.Signal(syscall.SIGTERM))
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("install --watch after SIGTERM: %v\n%s", err, out.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("install --watch ignored SIGTERM")
		}
		// Quiet while nothing changes: a file shows up once per change (the binary: installed,
		// then repaired), not once per round.
		if got := strings.Count(out.String(), "created       "+bin); got != 2 {
			t.Errorf("binary reported created %d times, want 2:\n%s", got, out.String())
		}
		if !strings.Contains(out.String(), "updated       "+conf+": the previous content is kept as "+backups[0]) {
			t.Errorf("the replacement is not reported:\n%s", out.String())
		}
	})
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	pb "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runLite runs one crictl-lite command line in-process.
func runLite(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()

	var out, errOut bytes.Buffer

	a := newApp(context.Background(), &out, &errOut)
	a.exePath = filepath.Join(t.TempDir(), "crictl") // no crictl.yaml next to it
	code = a.run(args)

	return out.String(), errOut.String(), code
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()

	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}

	return p
}

// clearCRIEnv makes the tests independent of the caller's crictl environment.
func clearCRIEnv(t *testing.T) {
	t.Helper()

	for _, env := range []string{
		"CONTAINER_RUNTIME_ENDPOINT", "IMAGE_SERVICE_ENDPOINT", "CRI_CONFIG_FILE",
		"CRICTL_CREDS", "CRICTL_AUTH", "CRICTL_PULL_TIMEOUT",
	} {
		t.Setenv(env, "")
		os.Unsetenv(env)
	}
}

func TestFlagParsing(t *testing.T) {
	clearCRIEnv(t)

	specs := []flagSpec{
		{kind: boolFlag, name: "quiet", aliases: []string{"q"}},
		{kind: boolFlag, name: "all", aliases: []string{"a"}},
		{kind: stringFlag, name: "output", aliases: []string{"o"}, value: "table"},
		{kind: durationFlag, name: "pull-timeout", aliases: []string{"pt"}, env: []string{"CRICTL_PULL_TIMEOUT"}},
		{kind: intFlag, name: "last", aliases: []string{"n"}},
		{kind: sliceFlag, name: "label", env: []string{"TEST_LABELS"}},
	}

	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, f *flags)
	}{
		{"defaults", nil, nil, func(t *testing.T, f *flags) {
			if f.Bool("quiet") || f.String("output") != "table" || f.IsSet("output") || f.Int("last") != 0 {
				t.Errorf("unexpected defaults")
			}
		}},
		{"long, short and = forms", []string{"--output=json", "-n", "3", "--quiet", "id1"}, nil, func(t *testing.T, f *flags) {
			if f.String("output") != "json" || f.Int("last") != 3 || !f.Bool("quiet") || !f.IsSet("o") || !f.IsSet("q") {
				t.Errorf("got output=%q last=%d quiet=%v", f.String("output"), f.Int("last"), f.Bool("quiet"))
			}

			if !reflect.DeepEqual(f.Args(), []string{"id1"}) {
				t.Errorf("args = %q", f.Args())
			}
		}},
		{"combined short options", []string{"-qa", "x"}, nil, func(t *testing.T, f *flags) {
			if !f.Bool("quiet") || !f.Bool("all") || !reflect.DeepEqual(f.Args(), []string{"x"}) {
				t.Errorf("-qa not split: quiet=%v all=%v args=%q", f.Bool("quiet"), f.Bool("all"), f.Args())
			}
		}},
		{"two-letter alias is not split", []string{"-pt", "5s"}, nil, func(t *testing.T, f *flags) {
			if f.Duration("pull-timeout") != 5*time.Second {
				t.Errorf("pull-timeout = %v", f.Duration("pull-timeout"))
			}
		}},
		{"flags after the first argument are arguments", []string{"id1", "-q"}, nil, func(t *testing.T, f *flags) {
			if f.Bool("quiet") || !reflect.DeepEqual(f.Args(), []string{"id1", "-q"}) {
				t.Errorf("quiet=%v args=%q", f.Bool("quiet"), f.Args())
			}
		}},
		{"slices split at commas", []string{"--label", "a=b, c=d", "--label", "e=f"}, nil, func(t *testing.T, f *flags) {
			if got := f.StringSlice("label"); !reflect.DeepEqual(got, []string{"a=b", "c=d", "e=f"}) {
				t.Errorf("label = %q", got)
			}
		}},
		{"env values", nil, map[string]string{"CRICTL_PULL_TIMEOUT": "1m", "TEST_LABELS": "x=y"}, func(t *testing.T, f *flags) {
			if f.Duration("pull-timeout") != time.Minute || !f.IsSet("pull-timeout") {
				t.Errorf("pull-timeout = %v", f.Duration("pull-timeout"))
			}

			if got := f.StringSlice("label"); !reflect.DeepEqual(got, []string{"x=y"}) {
				t.Errorf("label = %q", got)
			}
		}},
		{"command line replaces env slice", []string{"--label", "a=b"}, map[string]string{"TEST_LABELS": "x=y"}, func(t *testing.T, f *flags) {
			if got := f.StringSlice("label"); !reflect.DeepEqual(got, []string{"a=b"}) {
				t.Errorf("label = %q", got)
			}
		}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}

			f, err := newFlags(specs, true)
			if err != nil {
				t.Fatal(err)
			}

			if err := f.parse(tt.args); err != nil {
				t.Fatal(err)
			}

			tt.check(t, f)
		})
	}

	t.Run("unknown flag", func(t *testing.T) {
		f, _ := newFlags(specs, true)
		if err := f.parse([]string{"-qx"}); err == nil || err.Error() != "flag provided but not defined: -qx" {
			t.Errorf("err = %v", err)
		}
	})

	t.Run("bad env value", func(t *testing.T) {
		t.Setenv("CRICTL_PULL_TIMEOUT", "soon")

		if _, err := newFlags(specs, true); err == nil || !strings.Contains(err.Error(), `could not parse "soon" as duration value`) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestGlobalFlagsAndConfig(t *testing.T) {
	clearCRIEnv(t)

	cfgFile := writeFile(t, "crictl.yaml", "# comment\nruntime-endpoint: unix:///from/config.sock\nimage-endpoint: unix:///img.sock\ntimeout: 7\ndebug: false\npull-image-on-create: true\n")

	configure := func(t *testing.T, args ...string) *app {
		t.Helper()

		var errOut bytes.Buffer

		a := newApp(context.Background(), &bytes.Buffer{}, &errOut)
		a.exePath = filepath.Join(t.TempDir(), "crictl")

		g, err := newFlags(globalFlags, false)
		if err != nil {
			t.Fatal(err)
		}

		if err := g.parse(args); err != nil {
			t.Fatal(err)
		}

		if err := a.configure(g); err != nil {
			t.Fatalf("configure: %v", err)
		}

		return a
	}

	t.Run("flags with an empty config file", func(t *testing.T) {
		a := configure(t, "--config", writeFile(t, "empty.yaml", ""), "-r", "unix:///tmp/x/containerd.sock", "-t", "10s", "pods")
		if a.runtimeEndpoint != "unix:///tmp/x/containerd.sock" || !a.runtimeEndpointIsSet || a.imageEndpointIsSet ||
			a.timeout != 10*time.Second || a.pullImageOnCreate {
			t.Errorf("got %+v", a)
		}
	})

	t.Run("config file", func(t *testing.T) {
		a := configure(t, "--config", cfgFile)
		if a.runtimeEndpoint != "unix:///from/config.sock" || !a.runtimeEndpointIsSet ||
			a.imageEndpoint != "unix:///img.sock" || a.timeout != 7*time.Second || !a.pullImageOnCreate {
			t.Errorf("got %+v", a)
		}
	})

	t.Run("flags override config file", func(t *testing.T) {
		a := configure(t, "-c", cfgFile, "--runtime-endpoint=unix:///flag.sock", "-i", "unix:///flagimg.sock", "--timeout", "3s")
		if a.runtimeEndpoint != "unix:///flag.sock" || a.imageEndpoint != "unix:///flagimg.sock" || a.timeout != 3*time.Second {
			t.Errorf("got %+v", a)
		}
	})

	t.Run("timeout 0 means default", func(t *testing.T) {
		if a := configure(t, "-c", cfgFile, "-t", "0"); a.timeout != defaultTimeout {
			t.Errorf("timeout = %v", a.timeout)
		}
	})

	t.Run("env", func(t *testing.T) {
		t.Setenv("CONTAINER_RUNTIME_ENDPOINT", "unix:///env.sock")
		t.Setenv("CRI_CONFIG_FILE", "/nonexistent.yaml")

		a := configure(t, "--config", cfgFile) // the flag wins over CRI_CONFIG_FILE, env over the file
		if a.runtimeEndpoint != "unix:///env.sock" || a.imageEndpoint != "unix:///img.sock" {
			t.Errorf("got %+v", a)
		}
	})

	t.Run("config next to the binary", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "crictl.yaml"), []byte("runtime-endpoint: unix:///next.sock\n"), 0o644); err != nil {
			t.Fatal(err)
		}

		var errOut bytes.Buffer

		a := newApp(context.Background(), &bytes.Buffer{}, &errOut)
		a.exePath = filepath.Join(dir, "crictl")

		cfg, err := a.serverConfigFromFile(filepath.Join(dir, "missing.yaml"))
		if err != nil || cfg.runtimeEndpoint != "unix:///next.sock" {
			t.Fatalf("cfg=%+v err=%v", cfg, err)
		}

		if !strings.Contains(errOut.String(), `level=warning msg="Config \"`+dir+`/missing.yaml\" does not exist, trying next:`) {
			t.Errorf("warning: %s", errOut.String())
		}
	})

	t.Run("explicit missing config is fatal", func(t *testing.T) {
		_, stderr, code := runLite(t, "--config", "/nonexistent/crictl.yaml", "version")
		// The fallback next to the binary is tried (and reported) before giving up.
		if code != 1 || !strings.Contains(stderr, `level=fatal msg="load config file: stat `) {
			t.Errorf("code=%d stderr=%s", code, stderr)
		}
	})
}

func TestParseServerConfig(t *testing.T) {
	for _, tt := range []struct {
		yaml, err string
		want      serverConfig
	}{
		{yaml: "", want: serverConfig{}},
		{yaml: "runtime-endpoint: unix:///a.sock\ntimeout: 20\ndebug: true\ndisable-pull-on-run: true\n",
			want: serverConfig{runtimeEndpoint: "unix:///a.sock", timeout: 20 * time.Second, debug: true, disablePullOnRun: true}},
		{yaml: "timeout: 2s\n", err: "parsing config option 'timeout': strconv.Atoi: parsing \"2s\": invalid syntax"},
		{yaml: "debug: maybe\n", err: "parsing config option 'debug': strconv.ParseBool: parsing \"maybe\": invalid syntax"},
		{yaml: "runtime_endpoint: x\n", err: "Config option 'runtime_endpoint' is not valid"},
		{yaml: "a: [1\n", err: "yaml: line 1: did not find expected ',' or ']'"},
	} {
		cfg, err := parseServerConfig([]byte(tt.yaml))
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("%q: err = %v, want %s", tt.yaml, err, tt.err)
			}

			continue
		}

		if err != nil || *cfg != tt.want {
			t.Errorf("%q: got %+v, %v", tt.yaml, cfg, err)
		}
	}
}

func TestLoadPodSandboxConfig(t *testing.T) {
	var errOut bytes.Buffer

	c := &cmdContext{app: newApp(context.Background(), &bytes.Buffer{}, &errOut)}

	jsonCfg := writeFile(t, "pod.json", `{
  "metadata": {"name": "nginx", "namespace": "default", "uid": "abc", "attempt": 1},
  "hostname": "h",
  "log_directory": "/tmp/logs",
  "dns_config": {"servers": ["8.8.8.8"]},
  "port_mappings": [{"protocol": 1, "container_port": 80, "host_port": 8080}],
  "labels": {"app": "nginx"},
  "annotations": {"io.kubernetes.cri.untrusted-workload": "true"},
  "linux": {"cgroup_parent": "/kubepods", "security_context": {"namespace_options": {"network": 2}}}
}`)

	cfg, err := c.loadPodSandboxConfig(jsonCfg)
	if err != nil {
		t.Fatal(err)
	}

	if cfg.GetMetadata().GetName() != "nginx" || cfg.GetMetadata().GetAttempt() != 1 || cfg.GetLogDirectory() != "/tmp/logs" ||
		cfg.GetDnsConfig().GetServers()[0] != "8.8.8.8" || cfg.GetPortMappings()[0].GetProtocol() != pb.Protocol_UDP ||
		cfg.GetPortMappings()[0].GetHostPort() != 8080 || cfg.GetLabels()["app"] != "nginx" ||
		cfg.GetLinux().GetCgroupParent() != "/kubepods" ||
		cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() != pb.NamespaceMode_NODE {
		t.Errorf("unexpected config: %v", cfg)
	}

	if errOut.Len() != 0 {
		t.Errorf("unexpected warning: %s", errOut.String())
	}

	yamlCfg := writeFile(t, "pod.yaml", "metadata:\n  name: p\n  namespace: ns\nlinux: {}\n")

	cfg, err = c.loadPodSandboxConfig(yamlCfg)
	if err != nil {
		t.Fatal(err)
	}

	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(cfg.GetMetadata().GetUid()) {
		t.Errorf("generated uid %q", cfg.GetMetadata().GetUid())
	}

	if !strings.Contains(errOut.String(), "level=warning msg=\"cgroup_parent is not set. Use `runtime-config` to get the runtime cgroup driver\"") {
		t.Errorf("missing cgroup_parent warning: %s", errOut.String())
	}

	for content, want := range map[string]string{
		`{"hostname": "x"}`:           "metadata is not set",
		`{"metadata": {"name": "x"}}`: "name or namespace is not in metadata",
		`{"metadata": "x"}`:           "cannot unmarshal string into Go struct field PodSandboxConfig.metadata",
	} {
		if _, err := c.loadPodSandboxConfig(writeFile(t, "bad.json", content)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", content, err, want)
		}
	}

	if _, err := c.loadPodSandboxConfig("/nonexistent.json"); err == nil || err.Error() != "config at /nonexistent.json not found" {
		t.Errorf("err = %v", err)
	}
}

func TestLoadContainerConfig(t *testing.T) {
	cfg, err := loadContainerConfig(writeFile(t, "c.json", `{"metadata": {"name": "c"}, "image": {"image": "busybox"},
		"command": ["sleep", "1"], "envs": [{"key": "A", "value": "b"}], "log_path": "c.log"}`))
	if err != nil {
		t.Fatal(err)
	}

	if cfg.GetImage().GetImage() != "busybox" || string(cfg.GetEnvs()[0].GetValue()) != "b" || cfg.GetLogPath() != "c.log" {
		t.Errorf("unexpected config: %v", cfg)
	}

	if _, err := loadContainerConfig(writeFile(t, "c.json", `{"metadata": {"name": "c"}}`)); err == nil || err.Error() != "image is not set" {
		t.Errorf("err = %v", err)
	}
}

func TestEndpoints(t *testing.T) {
	for ep, want := range map[string]string{
		"unix:///run/containerd/containerd.sock": "/run/containerd/containerd.sock",
		"/tmp/x.sock":                            "/tmp/x.sock",
		"tcp://localhost:1234":                   "error: only support unix socket endpoint",
		"http://x":                               `error: protocol "http" not supported`,
	} {
		got, err := socketPath(ep)
		if err != nil {
			got = "error: " + err.Error()
		}

		if got != want {
			t.Errorf("%s: got %q, want %q", ep, got, want)
		}
	}
}

var fatalLine = regexp.MustCompile(`(?m)^time="[^"]+" level=fatal msg=(.*)$`)

func fatalMsg(t *testing.T, stderr string) string {
	t.Helper()

	m := fatalLine.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no fatal line in stderr:\n%s", stderr)
	}

	return m[1]
}

func TestCommandsAgainstFakeCRI(t *testing.T) {
	clearCRIEnv(t)

	f := newFakeCRI()
	ep := startFakeCRI(t, f)
	dir := t.TempDir()

	podCfg := filepath.Join(dir, "pod.json")
	os.WriteFile(podCfg, []byte(`{"metadata": {"name": "p1", "namespace": "default", "uid": "u1"}, "labels": {"app": "x"}}`), 0o644)
	rejectCfg := filepath.Join(dir, "reject.json")
	os.WriteFile(rejectCfg, []byte(`{"metadata": {"name": "nri-reject", "namespace": "default", "uid": "u2"}}`), 0o644)
	ctrCfg := filepath.Join(dir, "ctr.json")
	os.WriteFile(ctrCfg, []byte(`{"metadata": {"name": "c1"}, "image": {"image": "docker.io/library/busybox:1.36"}}`), 0o644)

	lite := func(t *testing.T, wantCode int, args ...string) (string, string) {
		t.Helper()

		stdout, stderr, code := runLite(t, append([]string{"-r", ep}, args...)...)
		if code != wantCode {
			t.Fatalf("%q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, wantCode, stdout, stderr)
		}

		return stdout, stderr
	}

	podID := fakeID("pod", "default", "p1", "u1", "0")

	t.Run("version and info", func(t *testing.T) {
		out, _ := lite(t, 0, "version")
		if out != "Version:  0.1.0\nRuntimeName:  fakecri\nRuntimeVersion:  v9.9.9\nRuntimeApiVersion:  v1\n" {
			t.Errorf("version:\n%s", out)
		}

		out, _ = lite(t, 0, "info")

		var info map[string]any
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatal(err)
		}

		if info["golang"] != "go1.26.8" || info["config"].(map[string]any)["enableSelinux"] != false ||
			len(info["status"].(map[string]any)["conditions"].([]any)) != 2 || len(info["runtimeHandlers"].([]any)) != 2 {
			t.Errorf("info:\n%s", out)
		}
	})

	t.Run("runp", func(t *testing.T) {
		out, _ := lite(t, 0, "runp", "--runtime", "runc", podCfg)
		if out != podID+"\n" || f.lastRun.GetRuntimeHandler() != "runc" || f.lastRun.GetConfig().GetLabels()["app"] != "x" {
			t.Errorf("runp printed %q, request %v", out, f.lastRun)
		}
	})

	t.Run("runp rejected", func(t *testing.T) {
		_, stderr := lite(t, 1, "runp", rejectCfg)

		want := `"run pod sandbox: rpc error: code = Unknown desc = ` + strings.ReplaceAll(nriRejectMsg, `"`, `\"`) + `"`
		if got := fatalMsg(t, stderr); got != want {
			t.Errorf("fatal msg\n got %s\nwant %s", got, want)
		}

		if !strings.Contains(stderr, `remote_runtime.go:237] "RunPodSandbox from runtime service failed" err="rpc error: code = Unknown desc = NRI RunPodSandbox failed`) {
			t.Errorf("missing klog line:\n%s", stderr)
		}
	})

	t.Run("pods", func(t *testing.T) {
		out, _ := lite(t, 0, "pods", "-q")
		if out != podID+"\n" {
			t.Errorf("pods -q: %q", out)
		}

		out, _ = lite(t, 0, "pods", "--name", "^p1$", "--namespace", "default")
		if !regexp.MustCompile(`(?m)^POD ID +CREATED +STATE +NAME +NAMESPACE +ATTEMPT +RUNTIME\n` + podID[:13] + ` +3 hours ago +Ready +p1 +default +0 +runc$`).MatchString(out) {
			t.Errorf("pods:\n%s", out)
		}

		if out, _ = lite(t, 0, "pods", "-q", "--name", "nomatch"); out != "" {
			t.Errorf("pods --name nomatch: %q", out)
		}

		out, _ = lite(t, 0, "pods", "-o", "json")

		var list struct {
			Items []struct {
				ID    string `json:"id"`
				State string `json:"state"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Items) != 1 || list.Items[0].State != "SANDBOX_READY" {
			t.Errorf("pods -o json (%v):\n%s", err, out)
		}
	})

	t.Run("images", func(t *testing.T) {
		out, _ := lite(t, 0, "pull", "--creds", "user:secret", "--pod-config", podCfg, "quay.io/x/y:1")
		ref := "sha256:" + fakeID("image", "quay.io/x/y:1")

		if out != "Image is up to date for "+ref+"\n" {
			t.Errorf("pull: %q", out)
		}

		if f.lastPull.GetAuth().GetUsername() != "user" || f.lastPull.GetAuth().GetPassword() != "secret" ||
			f.lastPull.GetSandboxConfig().GetMetadata().GetName() != "p1" {
			t.Errorf("pull request: %v", f.lastPull)
		}

		_, stderr := lite(t, 1, "pull", "busybox:denied")
		if got := fatalMsg(t, stderr); got != `"pulling image: failed to pull and unpack image \"busybox:denied\": pulling from host denied by policy"` {
			t.Errorf("pull denied: %s", got)
		}

		out, _ = lite(t, 0, "images", "-q")
		if !strings.Contains(out, ref+"\n") {
			t.Errorf("images -q:\n%s", out)
		}

		out, _ = lite(t, 0, "images")
		if !regexp.MustCompile(`(?m)^registry.k8s.io/pause +3.10 +[0-9a-f]{13} +320kB$`).MatchString(out) {
			t.Errorf("images:\n%s", out)
		}

		out, _ = lite(t, 0, "inspecti", "-o", "json", "registry.k8s.io/pause:3.10")

		var doc struct {
			Status struct {
				ID       string   `json:"id"`
				Pinned   bool     `json:"pinned"`
				RepoTags []string `json:"repoTags"`
				Size     string   `json:"size"`
			} `json:"status"`
			Info map[string]any `json:"info"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil || !doc.Status.Pinned || doc.Status.RepoTags[0] != "registry.k8s.io/pause:3.10" ||
			!strings.HasPrefix(doc.Status.ID, "sha256:") || doc.Status.Size != "320368" || doc.Info["chainID"] != "sha256:abc" {
			t.Errorf("inspecti (%v):\n%s", err, out)
		}

		_, stderr = lite(t, 1, "inspecti", "nothere")
		if got := fatalMsg(t, stderr); got != `"no such image \"nothere\" present"` {
			t.Errorf("inspecti nothere: %s", got)
		}

		out, _ = lite(t, 0, "rmi", "quay.io/x/y:1")
		if out != "Deleted: quay.io/x/y:1\n" {
			t.Errorf("rmi: %q", out)
		}
	})

	t.Run("containers", func(t *testing.T) {
		out, _ := lite(t, 0, "create", podID, ctrCfg, podCfg)
		ctrID := strings.TrimSpace(out)

		if ctrID != fakeID("ctr", podID, "c1", "0") {
			t.Fatalf("create: %q", out)
		}

		if out, _ = lite(t, 0, "ps", "-q"); out != "" {
			t.Errorf("ps -q before start: %q", out)
		}

		if out, _ = lite(t, 0, "start", ctrID); out != ctrID+"\n" {
			t.Errorf("start: %q", out)
		}

		out, _ = lite(t, 0, "ps")
		if !regexp.MustCompile(`(?m)^` + ctrID[:13] + ` +[0-9a-f]{13} +3 hours ago +Running +c1 +0 +` + podID[:13] + ` +p1 +default$`).MatchString(out) {
			t.Errorf("ps:\n%s", out)
		}

		_, stderr := lite(t, 1, "rmp", podID)
		if got := fatalMsg(t, stderr); got != `"pod sandbox \"`+podID+`\" is running, please stop it first"` {
			t.Errorf("rmp running: %s", got)
		}

		if out, _ = lite(t, 0, "stop", ctrID); out != ctrID+"\n" {
			t.Errorf("stop: %q", out)
		}

		if out, _ = lite(t, 0, "ps", "-aq"); out != ctrID+"\n" {
			t.Errorf("ps -aq: %q", out)
		}

		if out, _ = lite(t, 0, "rm", ctrID); out != ctrID+"\n" {
			t.Errorf("rm: %q", out)
		}
	})

	t.Run("stopp and rmp", func(t *testing.T) {
		if out, _ := lite(t, 0, "stopp", podID); out != "Stopped sandbox "+podID+"\n" {
			t.Errorf("stopp: %q", out)
		}

		if out, _ := lite(t, 0, "rmp", podID); out != "Removed sandbox "+podID+"\n" {
			t.Errorf("rmp: %q", out)
		}

		_, stderr := lite(t, 1, "rmp", "gone")
		if got := fatalMsg(t, stderr); !strings.HasPrefix(got, `"getting sandbox status of pod \"gone\": rpc error: code = NotFound desc = `) {
			t.Errorf("rmp gone: %s", got)
		}

		lite(t, 0, "runp", podCfg)

		if out, _ := lite(t, 0, "rmp", "-fa"); out != "Stopped sandbox "+podID+"\nRemoved sandbox "+podID+"\n" {
			t.Errorf("rmp -fa: %q", out)
		}

		if _, stderr := lite(t, 0, "rmp", "-a"); !strings.Contains(stderr, `level=info msg="No pods to remove"`) {
			t.Errorf("rmp -a: %s", stderr)
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		out, stderr := lite(t, 1, "pods", "--bogus")
		if !strings.HasPrefix(out, "Incorrect Usage: flag provided but not defined: -bogus\n") ||
			fatalMsg(t, stderr) != `"flag provided but not defined: -bogus"` {
			t.Errorf("stdout:\n%s\nstderr:\n%s", out, stderr)
		}

		if _, stderr = lite(t, 3, "bogus"); !strings.HasSuffix(stderr, "No help topic for 'bogus'\n") {
			t.Errorf("stderr: %s", stderr)
		}

		if out, _ = lite(t, 0, "runp"); !strings.Contains(out, "crictl runp [command options] pod-config.[json|yaml]") {
			t.Errorf("runp help: %s", out)
		}

		if _, stderr = lite(t, 1, "stop"); !strings.HasSuffix(stderr, "you must specify at least one CONTAINER-ID or use --all\n") {
			t.Errorf("stop: %s", stderr)
		}
	})
}

func TestDeadSocket(t *testing.T) {
	clearCRIEnv(t)

	sock := filepath.Join(t.TempDir(), "dead.sock")

	_, stderr, code := runLite(t, "-r", "unix://"+sock, "runp", "/nonexistent.json")
	want := `"validate service connection: validate CRI v1 runtime API for endpoint \"unix://` + sock +
		`\": rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial unix ` + sock +
		`: connect: no such file or directory\""`

	if code != 1 || fatalMsg(t, stderr) != want {
		t.Errorf("code=%d\n got %s\nwant %s", code, fatalMsg(t, stderr), want)
	}

	_, stderr, _ = runLite(t, "-i", "unix://"+sock, "-r", "unix:///unused", "images")
	if !strings.Contains(stderr, `validate CRI v1 image API for endpoint \"unix://`+sock) {
		t.Errorf("images: %s", stderr)
	}
}

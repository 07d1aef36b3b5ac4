package containerdconfig

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeTree writes files (relative names, "{dir}" expanded to the temp dir)
// and returns the temp dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		content = strings.ReplaceAll(content, "{dir}", dir)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoad(t *testing.T) {
	type want struct {
		major             int
		version           int
		effVersion        int
		files             []string // relative to dir
		sandbox           string
		sandboxFile       string // relative; "" = defaulted
		configPath        string
		configPathFile    string
		configPathDefault bool
		dirs              []string
		localPull         bool
		nriDisabled       bool
		nriSocket         string
		confDirImported   bool
		criDisabled       bool
		warning           string // substring of some warning
	}
	tests := []struct {
		name  string
		files map[string]string
		opts  Options
		want  want
	}{
		{
			name: "1.7 imports glob sets sandbox_image in a drop-in",
			files: map[string]string{
				"config.toml": `version = 2
imports = ["{dir}/config.d/*.toml"]
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
`,
				"config.d/10-sandbox.toml": `version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "1234.dkr.ecr.us-east-1.amazonaws.com/eks/pause:3.5"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
`,
				"config.d/20-nri.toml": `version = 2
[plugins."io.containerd.nri.v1.nri"]
  disable = false
  socket_path = "/run/nri/custom.sock"
`,
				"config.d/ignored.conf": `this is not loaded`,
			},
			want: want{
				major: 1, version: 2, effVersion: 2,
				files:       []string{"config.toml", "config.d/10-sandbox.toml", "config.d/20-nri.toml"},
				sandbox:     "1234.dkr.ecr.us-east-1.amazonaws.com/eks/pause:3.5",
				sandboxFile: "config.d/10-sandbox.toml",
				configPath:  "/etc/containerd/certs.d", configPathFile: "config.d/10-sandbox.toml",
				dirs:        []string{"/etc/containerd/certs.d"},
				localPull:   true,
				nriDisabled: false, nriSocket: "/run/nri/custom.sock",
			},
		},
		{
			name: "1.7 a drop-in touching the CRI table replaces it whole",
			files: map[string]string{
				"config.toml": `version = 2
imports = ["config.d/*.toml"]
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "example.com/pause:base"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"
[plugins."io.containerd.nri.v1.nri"]
  disable = false
`,
				"config.d/50-registry.toml": `version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
`,
			},
			want: want{
				major: 1, version: 2, effVersion: 2,
				files:      []string{"config.toml", "config.d/50-registry.toml"},
				sandbox:    DefaultSandboxImage1, // base's sandbox_image is gone
				configPath: "/etc/containerd/certs.d", configPathFile: "config.d/50-registry.toml",
				dirs:        []string{"/etc/containerd/certs.d"},
				localPull:   true,
				nriDisabled: false, nriSocket: DefaultNRISocketPath, // other tables untouched
			},
		},
		{
			name: "2.x deep merge keeps keys of the base",
			files: map[string]string{
				"config.toml": `version = 3
imports = ["conf.d/*.toml"]
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "example.com/pause:base"
[plugins."io.containerd.cri.v1.images".registry]
  config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"
`,
				"conf.d/50-registry.toml": `version = 3
[plugins."io.containerd.cri.v1.images".registry]
  config_path = "/etc/containerd/certs.d"
`,
			},
			want: want{
				major: 2, version: 3, effVersion: 3,
				files:       []string{"config.toml", "conf.d/50-registry.toml"},
				sandbox:     "example.com/pause:base",
				sandboxFile: "config.toml",
				configPath:  "/etc/containerd/certs.d", configPathFile: "conf.d/50-registry.toml",
				dirs:      []string{"/etc/containerd/certs.d"},
				nriSocket: DefaultNRISocketPath,
				// conf.d of the temp dir is imported, but Options.ConfDir is
				// the real default here.
			},
		},
		{
			name: "2.x conf.d is not imported implicitly",
			files: map[string]string{
				"config.toml": `version = 3
`,
				"conf.d/99-sandbox.toml": `version = 3
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "example.com/never:loaded"
`,
			},
			opts: Options{ConfDir: "{dir}/conf.d"},
			want: want{
				major: 2, version: 3, effVersion: 3,
				files:      []string{"config.toml"},
				sandbox:    DefaultSandboxImage2,
				configPath: DefaultRegistryConfigPath2, configPathDefault: true,
				dirs:      []string{"/etc/containerd/certs.d", "/etc/docker/certs.d"},
				nriSocket: DefaultNRISocketPath,
			},
		},
		{
			name: "2.x conf.d imported as containerd config default writes it",
			files: map[string]string{
				"config.toml": `version = 3
imports = ['{dir}/conf.d/*.toml']
`,
				"conf.d/99-sandbox.toml": `version = 3
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "example.com/pause:dropin"
`,
			},
			opts: Options{ConfDir: "{dir}/conf.d"},
			want: want{
				major: 2, version: 3, effVersion: 3,
				files:       []string{"config.toml", "conf.d/99-sandbox.toml"},
				sandbox:     "example.com/pause:dropin",
				sandboxFile: "conf.d/99-sandbox.toml",
				configPath:  DefaultRegistryConfigPath2, configPathDefault: true,
				dirs:            []string{"/etc/containerd/certs.d", "/etc/docker/certs.d"},
				nriSocket:       DefaultNRISocketPath,
				confDirImported: true,
			},
		},
		{
			name:  "1.7 defaults",
			files: map[string]string{"config.toml": "version = 2\n"},
			want: want{
				major: 1, version: 2, effVersion: 2,
				files:       []string{"config.toml"},
				sandbox:     DefaultSandboxImage1,
				localPull:   true,
				nriDisabled: true, nriSocket: DefaultNRISocketPath,
			},
		},
		{
			name:  "2.x defaults",
			files: map[string]string{"config.toml": "version = 3\n"},
			want: want{
				major: 2, version: 3, effVersion: 3,
				files:      []string{"config.toml"},
				sandbox:    DefaultSandboxImage2,
				configPath: DefaultRegistryConfigPath2, configPathDefault: true,
				dirs:      []string{"/etc/containerd/certs.d", "/etc/docker/certs.d"},
				nriSocket: DefaultNRISocketPath,
			},
		},
		{
			name: "relative imports resolve against the importing file, cycles end",
			files: map[string]string{
				"config.toml": `version = 3
imports = ["sub/a.toml", "config.toml"]
`,
				"sub/a.toml": `version = 3
imports = ["b.toml", "../config.toml", "nomatch/*.toml"]
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "example.com/pause:a"
`,
				"sub/b.toml": `version = 3
imports = ["a.toml"]
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "example.com/pause:b"
[plugins."io.containerd.cri.v1.images".registry]
  config_path = "/etc/containerd/certs.d"
`,
			},
			want: want{
				major: 2, version: 3, effVersion: 3,
				files:       []string{"config.toml", "sub/a.toml", "sub/b.toml"},
				sandbox:     "example.com/pause:b",
				sandboxFile: "sub/b.toml",
				configPath:  "/etc/containerd/certs.d", configPathFile: "sub/b.toml",
				dirs:      []string{"/etc/containerd/certs.d"},
				nriSocket: DefaultNRISocketPath,
			},
		},
		{
			name: "2.x migrates a version-2 config",
			files: map[string]string{
				"config.toml": `version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "example.com/pause:v2"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"
    [plugins."io.containerd.grpc.v1.cri".registry.configs."example.com".auth]
      username = "u"
`,
			},
			opts: Options{Major: 2},
			want: want{
				major: 2, version: 2, effVersion: 2,
				files:       []string{"config.toml"},
				sandbox:     "example.com/pause:v2",
				sandboxFile: "config.toml",
				configPath:  "/etc/containerd/certs.d:/etc/docker/certs.d", configPathFile: "config.toml",
				dirs:      []string{"/etc/containerd/certs.d", "/etc/docker/certs.d"},
				localPull: true, // registry.configs forces local pulls
				nriSocket: DefaultNRISocketPath,
			},
		},
		{
			name: "2.x a later version-3 file switches the version-2 migration off",
			files: map[string]string{
				"config.toml": `version = 2
imports = ["nri.toml"]
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "example.com/pause:v2"
`,
				"nri.toml": `version = 3
[plugins."io.containerd.nri.v1.nri"]
  disable = true
`,
			},
			opts: Options{Major: 2},
			want: want{
				major: 2, version: 2, effVersion: 3,
				files:      []string{"config.toml", "nri.toml"},
				sandbox:    DefaultSandboxImage2,
				configPath: DefaultRegistryConfigPath2, configPathDefault: true,
				dirs:        []string{"/etc/containerd/certs.d", "/etc/docker/certs.d"},
				nriDisabled: true, nriSocket: DefaultNRISocketPath,
				warning: "ignores",
			},
		},
		{
			name: "2.x versionless drop-in: cri renamed, nri short name ignored",
			files: map[string]string{
				"config.toml": `version = 3
imports = ["d.toml"]
`,
				"d.toml": `[plugins.nri]
  disable = true
[plugins."io.containerd.cri.v1.images"]
  use_local_image_pull = true
`,
			},
			want: want{
				major: 2, version: 3, effVersion: 3,
				files:      []string{"config.toml", "d.toml"},
				sandbox:    DefaultSandboxImage2,
				configPath: DefaultRegistryConfigPath2, configPathDefault: true,
				dirs:      []string{"/etc/containerd/certs.d", "/etc/docker/certs.d"},
				localPull: true,
				nriSocket: DefaultNRISocketPath, // still enabled
				warning:   "io.containerd.grpc.v1.nri",
			},
		},
		{
			name: "1.7 version-1 config uses short plugin IDs",
			files: map[string]string{
				"config.toml": `[plugins.cri]
  sandbox_image = "example.com/pause:v1"
  [plugins.cri.registry]
    config_path = "/etc/containerd/certs.d"
[plugins.nri]
  disable = false
  plugin_registration_timeout = "10s"
`,
			},
			opts: Options{Major: 1},
			want: want{
				major: 1, version: 1, effVersion: 1,
				files:       []string{"config.toml"},
				sandbox:     "example.com/pause:v1",
				sandboxFile: "config.toml",
				configPath:  "/etc/containerd/certs.d", configPathFile: "config.toml",
				dirs:      []string{"/etc/containerd/certs.d"},
				localPull: true,
				nriSocket: DefaultNRISocketPath,
			},
		},
		{
			name: "2.x disabled_plugins switches NRI and CRI off",
			files: map[string]string{
				"config.toml": `version = 3
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.grpc.v1.cri"]
`,
			},
			want: want{
				major: 2, version: 3, effVersion: 3,
				files:      []string{"config.toml"},
				sandbox:    DefaultSandboxImage2,
				configPath: DefaultRegistryConfigPath2, configPathDefault: true,
				dirs:        []string{"/etc/containerd/certs.d", "/etc/docker/certs.d"},
				nriDisabled: true, nriSocket: DefaultNRISocketPath,
				criDisabled: true,
			},
		},
		{
			name: "2.x empty sandbox falls back to the default",
			files: map[string]string{
				"config.toml": `version = 3
[plugins."io.containerd.cri.v1.images"]
  max_concurrent_downloads = 10
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = ""
`,
			},
			want: want{
				major: 2, version: 3, effVersion: 3,
				files:      []string{"config.toml"},
				sandbox:    DefaultSandboxImage2,
				configPath: DefaultRegistryConfigPath2, configPathDefault: true,
				dirs:      []string{"/etc/containerd/certs.d", "/etc/docker/certs.d"},
				localPull: true, // max_concurrent_downloads != 3
				nriSocket: DefaultNRISocketPath,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, tt.files)
			opts := tt.opts
			opts.ConfDir = strings.ReplaceAll(opts.ConfDir, "{dir}", dir)
			info, err := LoadWithOptions(filepath.Join(dir, "config.toml"), opts)
			if err != nil {
				t.Fatalf("LoadWithOptions: %v", err)
			}
			rel := func(p string) string {
				if p == "" {
					return ""
				}
				r, err := filepath.Rel(dir, p)
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			var files []string
			for _, f := range info.Files {
				files = append(files, rel(f))
			}
			w := tt.want
			check := func(name string, got, want any) {
				t.Helper()
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", name, got, want)
				}
			}
			check("Major", info.Major, w.major)
			check("Version", info.Version, w.version)
			check("EffectiveVersion", info.EffectiveVersion, w.effVersion)
			check("Files", files, w.files)
			check("SandboxImage", info.SandboxImage, w.sandbox)
			check("SandboxImageFile", rel(info.SandboxImageFile), w.sandboxFile)
			check("SandboxImageDefaulted", info.SandboxImageDefaulted, w.sandboxFile == "")
			check("RegistryConfigPath", info.RegistryConfigPath, w.configPath)
			check("RegistryConfigPathFile", rel(info.RegistryConfigPathFile), w.configPathFile)
			check("RegistryConfigPathDefaulted", info.RegistryConfigPathDefaulted, w.configPathDefault)
			check("RegistryConfigDirs", info.RegistryConfigDirs, w.dirs)
			check("UseLocalImagePull", info.UseLocalImagePull, w.localPull)
			check("NRI.Disabled", info.NRI.Disabled, w.nriDisabled)
			check("NRI.SocketPath", info.NRI.SocketPath, w.nriSocket)
			check("ConfDirImported", info.ConfDirImported, w.confDirImported)
			check("CRIDisabled", info.CRIDisabled, w.criDisabled)
			if w.warning != "" && !strings.Contains(strings.Join(info.Warnings, "\n"), w.warning) {
				t.Errorf("Warnings = %q, want one containing %q", info.Warnings, w.warning)
			}
			if w.warning == "" && len(info.Warnings) > 0 {
				t.Errorf("unexpected Warnings %q", info.Warnings)
			}
			if info.UseLocalImagePull && info.UseLocalImagePullReason == "" {
				t.Error("UseLocalImagePull without a reason")
			}
		})
	}
}

func TestLoadNRIDetails(t *testing.T) {
	dir := writeTree(t, map[string]string{"config.toml": `version = 3
[plugins."io.containerd.nri.v1.nri"]
  plugin_path = "/usr/libexec/nri"
  plugin_config_path = ""
  plugin_request_timeout = "500ms"
  disable_connections = true
`})
	info, err := Load(filepath.Join(dir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := NRI{
		Disabled:            false,
		DisabledReason:      info.NRI.DisabledReason,
		SocketPath:          DefaultNRISocketPath,
		PluginPath:          "/usr/libexec/nri",
		PluginConfigPath:    DefaultNRIPluginConfigPath, // "" keeps the default
		RegistrationTimeout: DefaultNRIRegistrationTimeout,
		RequestTimeout:      500 * time.Millisecond,
		DisableConnections:  true,
	}
	if info.NRI != want {
		t.Errorf("NRI = %+v, want %+v", info.NRI, want)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		opts     Options
		wantIn   []string // substrings of the error; "{dir}" expanded
		notExist bool
	}{
		{
			name:     "missing main file",
			files:    map[string]string{"other.toml": ""},
			wantIn:   []string{"{dir}/config.toml"},
			notExist: true,
		},
		{
			name: "missing plain import",
			files: map[string]string{"config.toml": `version = 2
imports = ["missing.toml", "none/*.toml"]
`},
			wantIn:   []string{"{dir}/missing.toml"},
			notExist: true,
		},
		{
			name:   "malformed main file",
			files:  map[string]string{"config.toml": "version = 2\n[plugins\n"},
			wantIn: []string{"{dir}/config.toml", "line 2"},
		},
		{
			name: "malformed drop-in",
			files: map[string]string{
				"config.toml": "version = 3\nimports = [\"d/*.toml\"]\n",
				"d/x.toml":    "version = 3\nfoo = = 1\n",
			},
			wantIn: []string{"{dir}/d/x.toml"},
		},
		{
			name: "wrong type names the file",
			files: map[string]string{
				"config.toml": "version = 3\nimports = [\"d.toml\"]\n",
				"d.toml":      "version = 3\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = 5\n",
			},
			wantIn: []string{"{dir}/d.toml", "pinned_images.sandbox", "string"},
		},
		{
			name: "no version above 1 anywhere, no major",
			files: map[string]string{
				"config.toml": "imports = [\"d.toml\"]\n[plugins.cri]\n",
				"d.toml":      "version = 1\n",
			},
			wantIn: []string{"{dir}/config.toml", "Options.RuntimeVersion or Options.Major"},
		},
		{
			name:   "1.7 refuses version 3",
			files:  map[string]string{"config.toml": "version = 3\n"},
			opts:   Options{Major: 1},
			wantIn: []string{"{dir}/config.toml", "version 3"},
		},
		{
			name: "2.2 refuses version 4",
			files: map[string]string{
				"config.toml": "version = 3\nimports = [\"d.toml\"]\n",
				"d.toml":      "version = 4\n",
			},
			opts:   Options{RuntimeVersion: "v2.2.9"},
			wantIn: []string{"{dir}/d.toml", "version 4", "containerd 2.2 (max 3)"},
		},
		{
			name: "2.2 crashes on a versionless file after version 4",
			files: map[string]string{
				"config.toml": "version = 3\nimports = [\"d.toml\", \"e.toml\"]\n",
				"d.toml":      "version = 4\n",
				"e.toml":      "[plugins.cri]\n",
			},
			opts:   Options{RuntimeVersion: "2.2.9"},
			wantIn: []string{"{dir}/e.toml", "crash"},
		},
		{
			name: "2.3 refuses version 5",
			files: map[string]string{
				"config.toml": "version = 4\nimports = [\"d.toml\"]\n",
				"d.toml":      "version = 5\n",
			},
			opts:   Options{RuntimeVersion: "v2.3.7"},
			wantIn: []string{"{dir}/d.toml", "version 5", "containerd 2.3 (max 4)"},
		},
		{
			name: "2.4 crashes on a lower version after version 5",
			files: map[string]string{
				"config.toml": "version = 5\nimports = [\"d.toml\"]\n",
				"d.toml":      "version = 4\n",
			},
			opts:   Options{RuntimeVersion: "v2.4.2"},
			wantIn: []string{"{dir}/d.toml", "crash"},
		},
		{
			name:   "1.7 refuses version 4",
			files:  map[string]string{"config.toml": "version = 4\n"},
			opts:   Options{RuntimeVersion: "1.7.35"},
			wantIn: []string{"{dir}/config.toml", "version 4", "containerd 1.7"},
		},
		{
			name:   "runtime version contradicts Major",
			files:  map[string]string{"config.toml": "version = 2\n"},
			opts:   Options{RuntimeVersion: "v2.3.7", Major: 1},
			wantIn: []string{"v2.3.7", "Options.Major"},
		},
		{
			name:   "runtime version unparsable",
			files:  map[string]string{"config.toml": "version = 2\n"},
			opts:   Options{RuntimeVersion: "containerd"},
			wantIn: []string{`"containerd"`, "major.minor"},
		},
		{
			name:   "runtime version older than 1.7",
			files:  map[string]string{"config.toml": "version = 2\n"},
			opts:   Options{RuntimeVersion: "v1.6.36"},
			wantIn: []string{"1.6.36", "1.7"},
		},
		{
			name: "2.3 migrating a CRI value that is not a table",
			files: map[string]string{
				"config.toml": "version = 4\nimports = [\"d.toml\"]\n",
				"d.toml":      "version = 2\n[plugins]\n\"io.containerd.grpc.v1.cri\" = 5\n",
			},
			wantIn: []string{"{dir}/d.toml", "must be a table"},
		},
		{
			name:   "1.7 version 2 with short plugin key",
			files:  map[string]string{"config.toml": "version = 2\n[plugins.cri]\nsandbox_image = \"x\"\n"},
			wantIn: []string{"{dir}/config.toml", `"cri"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, tt.files)
			_, err := LoadWithOptions(filepath.Join(dir, "config.toml"), tt.opts)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantIn {
				w = strings.ReplaceAll(w, "{dir}", dir)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tt.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v", got, tt.notExist)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	i1, err := Defaults(1)
	if err != nil {
		t.Fatal(err)
	}
	if i1.SandboxImage != DefaultSandboxImage1 || !i1.NRI.Disabled || i1.RegistryConfigPath != "" || len(i1.Files) != 0 {
		t.Errorf("Defaults(1) = %+v", i1)
	}
	i2, err := Defaults(2)
	if err != nil {
		t.Fatal(err)
	}
	if i2.SandboxImage != DefaultSandboxImage2 || i2.NRI.Disabled || i2.RegistryConfigPath != DefaultRegistryConfigPath2 || i2.UseLocalImagePull {
		t.Errorf("Defaults(2) = %+v", i2)
	}
	if _, err := Defaults(3); err == nil {
		t.Error("Defaults(3) succeeded")
	}
}

func TestMajorFromVersion(t *testing.T) {
	for _, tt := range []struct {
		version, major int
		ok             bool
	}{{0, 0, false}, {1, 0, false}, {2, 1, true}, {3, 2, true}, {4, 2, true}, {5, 0, false}} {
		m, ok := MajorFromVersion(tt.version)
		if m != tt.major || ok != tt.ok {
			t.Errorf("MajorFromVersion(%d) = %d, %v; want %d, %v", tt.version, m, ok, tt.major, tt.ok)
		}
	}
}

func TestWouldLoad(t *testing.T) {
	info := &Info{
		Files:          []string{"/etc/containerd/config.toml"},
		ImportPatterns: []string{"/etc/containerd/conf.d/*.toml", "/etc/containerd/extra.toml", "/etc/containerd/x?.toml"},
	}
	for path, want := range map[string]bool{
		"/etc/containerd/config.toml":          true,
		"/etc/containerd/conf.d/99-sg.toml":    true,
		"/etc/containerd/conf.d/sub/99.toml":   false,
		"/etc/containerd/conf.d/99-sg.conf":    false,
		"/etc/containerd/extra.toml":           true,
		"/etc/containerd/xa.toml":              false, // no "*": containerd does not glob
		"/etc/containerd/x?.toml":              true,
		"/etc/containerd/conf.d/../extra.toml": true,
	} {
		if got := info.WouldLoad(path); got != want {
			t.Errorf("WouldLoad(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestBridgeEffective(t *testing.T) {
	tests := []struct {
		name    string
		info    *Info
		ok      bool
		fix     string
		whyPart string
	}{
		{"nil", nil, false, "", "unknown"},
		{"1.7 without config_path", &Info{Major: 1}, false, FixSingleConfigDir, "config_path"},
		{"1.7 with config_path", &Info{Major: 1, RegistryConfigPath: "/etc/containerd/certs.d"}, true, "", ""},
		{"1.7 with several dirs", &Info{Major: 1, RegistryConfigPath: "/a:/b", UseLocalImagePull: true}, true, "", ""},
		{"1.7 CRI disabled", &Info{Major: 1, RegistryConfigPath: "/a", CRIDisabled: true}, false, "", "disabled"},
		{"2.x default: several dirs via transfer service", &Info{Major: 2, RegistryConfigPath: DefaultRegistryConfigPath2}, false, FixLocalImagePull, "transfer service"},
		{"2.x several dirs with local pulls", &Info{Major: 2, RegistryConfigPath: DefaultRegistryConfigPath2, UseLocalImagePull: true}, true, "", ""},
		{"2.x single dir", &Info{Major: 2, RegistryConfigPath: "/etc/containerd/certs.d"}, true, "", ""},
		{"2.x mirrors, no config_path", &Info{Major: 2, RegistryMirrors: true, UseLocalImagePull: true}, false, FixSingleConfigDir, "mirrors"},
		{"2.1 without config_path", &Info{Major: 2, Line: Line21}, false, FixSingleConfigDir, "containerd 2.1 has no default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why, fix := BridgeEffective(tt.info)
			if ok != tt.ok || fix != tt.fix || !strings.Contains(why, tt.whyPart) {
				t.Errorf("BridgeEffective = %v, %q, %q; want %v, ...%q..., %q", ok, why, fix, tt.ok, tt.whyPart, tt.fix)
			}
			if strings.Contains(fix, "\n") {
				t.Errorf("fix %q is not one line", fix)
			}
		})
	}
}

// TestBridgeEffectiveFromFiles ties Load and BridgeEffective together for
// the common node layouts.
func TestBridgeEffectiveFromFiles(t *testing.T) {
	for _, tt := range []struct {
		name, config string
		major        int
		ok           bool
	}{
		{"EKS 1.7 style", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d:/etc/docker/certs.d\"\n", 0, true},
		{"1.7 legacy", "version = 2\n", 0, false},
		{"2.x default", "version = 3\n", 0, false},
		{"2.x single dir", "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n", 0, true},
		{"2.x local pulls", "version = 3\n[plugins.\"io.containerd.cri.v1.images\"]\nuse_local_image_pull = true\n", 0, true},
		{"2.x migrated 1.7 file", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n", 2, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"config.toml": tt.config})
			info, err := LoadWithOptions(filepath.Join(dir, "config.toml"), Options{Major: tt.major})
			if err != nil {
				t.Fatal(err)
			}
			if ok, why, _ := BridgeEffective(info); ok != tt.ok {
				t.Errorf("BridgeEffective = %v (%s), want %v", ok, why, tt.ok)
			}
		})
	}
}

package containerdconfig

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseRuntimeVersion(t *testing.T) {
	for _, tt := range []struct {
		in      string
		line    Line
		newer   bool
		wantErr string
	}{
		{in: "v2.3.7", line: Line23},
		{in: "2.4.2", line: Line24},
		{in: " 1.7.35\n", line: Line17},
		{in: "1.7.27-0ubuntu1~24.04.1", line: Line17},
		{in: "v2.1.5+unknown", line: Line21},
		{in: "2.0", line: Line20},
		{in: "v2.2.9-rc.1", line: Line22},
		{in: "v2.5.0", line: LineNewest, newer: true},
		{in: "3.0.1", line: LineNewest, newer: true},
		{in: "v1.6.36", wantErr: "only 1.7 and 2.x"},
		{in: "1.8.0", wantErr: "only 1.7 and 2.x"},
		{in: "0.2.1", wantErr: "only 1.7 and 2.x"},
		{in: "", wantErr: "major.minor"},
		{in: "v2", wantErr: "major.minor"},
		{in: "v2.34abc", wantErr: "major.minor"},
		{in: "containerd v2.3.7", wantErr: "major.minor"},
		{in: "2.100.1", wantErr: "out of range"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			line, note, err := ParseRuntimeVersion(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if line != tt.line || (note != "") != tt.newer {
				t.Errorf("= %v, %q; want %v, note %v", line, note, tt.line, tt.newer)
			}
		})
	}
}

func TestLineProperties(t *testing.T) {
	for _, tt := range []struct {
		line          Line
		str           string
		configVersion int
		sandbox       string
		configPath    string
	}{
		{Line17, "1.7", 2, "registry.k8s.io/pause:3.8", ""},
		{Line20, "2.0", 3, "registry.k8s.io/pause:3.10", ""},
		{Line21, "2.1", 3, "registry.k8s.io/pause:3.10", ""},
		{Line22, "2.2", 3, "registry.k8s.io/pause:3.10.1", DefaultRegistryConfigPath2},
		{Line23, "2.3", 4, "registry.k8s.io/pause:3.10.2", DefaultRegistryConfigPath2},
		{Line24, "2.4", 4, "registry.k8s.io/pause:3.10.2", DefaultRegistryConfigPath2},
	} {
		if got := tt.line.String(); got != tt.str {
			t.Errorf("%d.String() = %q, want %q", int(tt.line), got, tt.str)
		}
		if got := tt.line.ConfigVersion(); got != tt.configVersion {
			t.Errorf("%v.ConfigVersion() = %d, want %d", tt.line, got, tt.configVersion)
		}
		if got := tt.line.DefaultSandboxImage(); got != tt.sandbox {
			t.Errorf("%v.DefaultSandboxImage() = %q, want %q", tt.line, got, tt.sandbox)
		}
		if got := tt.line.defaultRegistryConfigPath(); got != tt.configPath {
			t.Errorf("%v.defaultRegistryConfigPath() = %q, want %q", tt.line, got, tt.configPath)
		}
	}
	if LineUnknown.String() != "unknown" {
		t.Errorf("LineUnknown.String() = %q", LineUnknown.String())
	}
}

// TestLoadLines covers what differs between containerd lines: which line is
// chosen, and how each line migrates and merges files of other versions.
func TestLoadLines(t *testing.T) {
	const (
		v2CRI = `[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "example.com/pause:v2"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
`
		v4Main = `version = 4
imports = ["d/*.toml"]
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "example.com/pause:v4"
`
	)
	type want struct {
		line        Line
		assumed     bool
		source      string // substring of LineSource
		effVersion  int
		sandbox     string
		sandboxFile string // relative; "" = defaulted
		configPath  string
		localPull   bool
		nriDisabled bool
		notes       []string // substrings, one per note, in order
		warning     string
	}
	tests := []struct {
		name  string
		files map[string]string
		opts  Options
		want  want
	}{
		{
			name:  "version 4 alone means 2.3+",
			files: map[string]string{"config.toml": "version = 4\n"},
			want: want{line: Line23, assumed: true, source: "version 4 in", effVersion: 4,
				sandbox: DefaultSandboxImage23, configPath: DefaultRegistryConfigPath2,
				notes: []string{"only containerd 2.3 and later read; read as containerd 2.3"}},
		},
		{
			name: "2.3 migrates a version-2 drop-in on its own and deep-merges it",
			files: map[string]string{
				"config.toml": v4Main,
				"d/50-registry.toml": `version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
`,
			},
			opts: Options{RuntimeVersion: "v2.3.7"},
			want: want{line: Line23, source: "containerd v2.3.7", effVersion: 4,
				sandbox: "example.com/pause:v4", sandboxFile: "config.toml",
				configPath: "/etc/containerd/certs.d"},
		},
		{
			name:  "2.3 migrates 1.7-style CRI keys of a version-3 file",
			files: map[string]string{"config.toml": "version = 3\n" + v2CRI},
			opts:  Options{RuntimeVersion: "2.3.7"},
			want: want{line: Line23, source: "containerd 2.3.7", effVersion: 4,
				sandbox: "example.com/pause:v2", sandboxFile: "config.toml",
				configPath: "/etc/containerd/certs.d"},
		},
		{
			name:  "2.2 ignores 1.7-style CRI keys of a version-3 file",
			files: map[string]string{"config.toml": "version = 3\n" + v2CRI},
			opts:  Options{RuntimeVersion: "v2.2.9"},
			want: want{line: Line22, source: "containerd v2.2.9", effVersion: 3,
				sandbox: DefaultSandboxImage2, configPath: DefaultRegistryConfigPath2,
				warning: "ignores"},
		},
		{
			name:  "2.4 ignores 1.7-style CRI keys of a version-4 file",
			files: map[string]string{"config.toml": "version = 4\n" + v2CRI},
			opts:  Options{RuntimeVersion: "v2.4.2"},
			want: want{line: Line24, source: "containerd v2.4.2", effVersion: 4,
				sandbox: DefaultSandboxImage23, configPath: DefaultRegistryConfigPath2,
				warning: "migrates only files of a version below 4"},
		},
		{
			name: "a later version-3 file stops 2.2's migration but not 2.3's",
			files: map[string]string{
				"config.toml": "version = 2\nimports = [\"nri.toml\"]\n" + v2CRI,
				"nri.toml":    "version = 3\n[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true\n",
			},
			opts: Options{RuntimeVersion: "v2.3.7"},
			want: want{line: Line23, source: "v2.3.7", effVersion: 4,
				sandbox: "example.com/pause:v2", sandboxFile: "config.toml",
				configPath: "/etc/containerd/certs.d", nriDisabled: true},
		},
		{
			name: "versionless main with short names: 2.3 migrates it",
			files: map[string]string{"config.toml": `[plugins.cri]
  sandbox_image = "example.com/pause:v1"
[plugins.nri]
  disable = true
`},
			opts: Options{RuntimeVersion: "v2.3.7"},
			want: want{line: Line23, source: "v2.3.7", effVersion: 4,
				sandbox: "example.com/pause:v1", sandboxFile: "config.toml",
				configPath: DefaultRegistryConfigPath2,
				warning:    "io.containerd.grpc.v1.nri"},
		},
		{
			name: "versionless main with short names: 2.2 renames but does not migrate",
			files: map[string]string{"config.toml": `[plugins.cri]
  sandbox_image = "example.com/pause:v1"
`},
			opts: Options{RuntimeVersion: "v2.2.9"},
			want: want{line: Line22, source: "v2.2.9", effVersion: 3,
				sandbox: DefaultSandboxImage2, configPath: DefaultRegistryConfigPath2,
				warning: "ignores"},
		},
		{
			name: "versionless drop-in after version 4: 2.3 migrates it",
			files: map[string]string{
				"config.toml": v4Main,
				"d/x.toml": `[plugins.cri]
  sandbox_image = "example.com/pause:short"
  [plugins.cri.registry]
    config_path = "/etc/containerd/certs.d"
`,
			},
			want: want{line: Line23, assumed: true, source: "version 4", effVersion: 4,
				sandbox: "example.com/pause:short", sandboxFile: "d/x.toml",
				configPath: "/etc/containerd/certs.d",
				notes:      []string{"read as containerd 2.3"}},
		},
		{
			name: "version 5 is read with the newest line's rules",
			files: map[string]string{
				"config.toml": "version = 5\nimports = [\"d/*.toml\"]\n",
				"d/a.toml":    "version = 2\n" + v2CRI,
			},
			want: want{line: LineNewest, assumed: true, source: "version 5", effVersion: 5,
				sandbox: "example.com/pause:v2", sandboxFile: "d/a.toml",
				configPath: "/etc/containerd/certs.d",
				notes:      []string{"config version 5, newer than any containerd line sandbox-guard knows"}},
		},
		{
			name:  "a runtime newer than known is read as the newest line",
			files: map[string]string{"config.toml": "version = 5\n"},
			opts:  Options{RuntimeVersion: "v2.6.0"},
			want: want{line: LineNewest, source: "v2.6.0", effVersion: 5,
				sandbox: DefaultSandboxImage23, configPath: DefaultRegistryConfigPath2,
				notes: []string{"containerd v2.6.0 is newer than any line"}},
		},
		{
			name:  "Major 2 without a runtime version: 2.2 assumed, 2.3's answer noted",
			files: map[string]string{"config.toml": "version = 3\n"},
			opts:  Options{Major: 2},
			want: want{line: Line22, assumed: true, source: "Options.Major 2", effVersion: 3,
				sandbox: DefaultSandboxImage2, configPath: DefaultRegistryConfigPath2,
				notes: []string{"read as containerd 2.2", "containerd 2.3+ would read: sandbox image registry.k8s.io/pause:3.10.2"}},
		},
		{
			name: "version 2 main and version 3 drop-in can only be 2.x",
			files: map[string]string{
				"config.toml": "version = 2\nimports = [\"d.toml\"]\n" + v2CRI,
				"d.toml":      "version = 3\n",
			},
			want: want{line: Line22, assumed: true, source: "version 3 in", effVersion: 3,
				sandbox: DefaultSandboxImage2, configPath: DefaultRegistryConfigPath2,
				warning: "ignores",
				notes: []string{"read as containerd 2.2",
					"containerd 2.3+ would read: sandbox image example.com/pause:v2, registry config_path \"/etc/containerd/certs.d\""}},
		},
		{
			name:  "version 2 alone: 1.7 assumed, 2.x answers noted",
			files: map[string]string{"config.toml": "version = 2\n" + v2CRI},
			want: want{line: Line17, assumed: true, source: "version 2 in", effVersion: 2,
				sandbox: "example.com/pause:v2", sandboxFile: "config.toml",
				configPath: "/etc/containerd/certs.d", localPull: true, nriDisabled: true,
				notes: []string{"read as containerd 1.7",
					"containerd 2.0-2.2 would read: NRI disabled = false",
					"containerd 2.3+ would read: NRI disabled = false"}},
		},
		{
			name:  "2.1: no config_path default",
			files: map[string]string{"config.toml": "version = 3\n"},
			opts:  Options{RuntimeVersion: "v2.1.5"},
			want: want{line: Line21, source: "v2.1.5", effVersion: 3,
				sandbox: "registry.k8s.io/pause:3.10"},
		},
		{
			name:  "2.0: always local pulls",
			files: map[string]string{"config.toml": "version = 3\n"},
			opts:  Options{RuntimeVersion: "v2.0.7"},
			want: want{line: Line20, source: "v2.0.7", effVersion: 3,
				sandbox: "registry.k8s.io/pause:3.10", localPull: true},
		},
		{
			name: "containerd-section keys migrate only with runtimes",
			files: map[string]string{"config.toml": `version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  discard_unpacked_layers = true
`},
			opts: Options{RuntimeVersion: "v2.2.9"},
			want: want{line: Line22, source: "v2.2.9", effVersion: 2,
				sandbox: DefaultSandboxImage2, configPath: DefaultRegistryConfigPath2},
		},
		{
			name: "containerd-section keys migrate with runtimes",
			files: map[string]string{"config.toml": `version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  discard_unpacked_layers = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
`},
			opts: Options{RuntimeVersion: "v2.3.7"},
			want: want{line: Line23, source: "v2.3.7", effVersion: 4,
				sandbox: DefaultSandboxImage23, configPath: DefaultRegistryConfigPath2,
				localPull: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, tt.files)
			info, err := LoadWithOptions(filepath.Join(dir, "config.toml"), tt.opts)
			if err != nil {
				t.Fatalf("LoadWithOptions: %v", err)
			}
			w := tt.want
			check := func(name string, got, want any) {
				t.Helper()
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", name, got, want)
				}
			}
			sandboxFile := ""
			if info.SandboxImageFile != "" {
				sandboxFile, _ = filepath.Rel(dir, info.SandboxImageFile)
			}
			check("Line", info.Line, w.line)
			check("Major", info.Major, w.line.Major())
			check("LineAssumed", info.LineAssumed, w.assumed)
			if !strings.Contains(info.LineSource, w.source) {
				t.Errorf("LineSource = %q, want it to contain %q", info.LineSource, w.source)
			}
			check("EffectiveVersion", info.EffectiveVersion, w.effVersion)
			check("SandboxImage", info.SandboxImage, w.sandbox)
			check("SandboxImageFile", sandboxFile, w.sandboxFile)
			check("RegistryConfigPath", info.RegistryConfigPath, w.configPath)
			check("UseLocalImagePull", info.UseLocalImagePull, w.localPull)
			check("NRI.Disabled", info.NRI.Disabled, w.nriDisabled)
			if len(info.Notes) != len(w.notes) {
				t.Errorf("Notes = %q, want %d matching %q", info.Notes, len(w.notes), w.notes)
			} else {
				for i, n := range w.notes {
					if !strings.Contains(info.Notes[i], n) {
						t.Errorf("Notes[%d] = %q, want it to contain %q", i, info.Notes[i], n)
					}
				}
			}
			if all := strings.Join(info.Warnings, "\n"); (w.warning == "") != (all == "") || !strings.Contains(all, w.warning) {
				t.Errorf("Warnings = %q, want one containing %q", info.Warnings, w.warning)
			}
		})
	}
}

func TestDefaultsFor(t *testing.T) {
	for _, tt := range []struct {
		opts       Options
		line       Line
		assumed    bool
		sandbox    string
		configPath string
		nriOff     bool
		wantErr    string
	}{
		{opts: Options{RuntimeVersion: "v2.4.2"}, line: Line24, sandbox: DefaultSandboxImage23, configPath: DefaultRegistryConfigPath2},
		{opts: Options{RuntimeVersion: "v2.3.7"}, line: Line23, sandbox: DefaultSandboxImage23, configPath: DefaultRegistryConfigPath2},
		{opts: Options{RuntimeVersion: "v2.1.9"}, line: Line21, sandbox: "registry.k8s.io/pause:3.10"},
		{opts: Options{RuntimeVersion: "1.7.35"}, line: Line17, sandbox: DefaultSandboxImage1, nriOff: true},
		{opts: Options{Major: 2}, line: Line22, assumed: true, sandbox: DefaultSandboxImage2, configPath: DefaultRegistryConfigPath2},
		{opts: Options{Major: 1}, line: Line17, sandbox: DefaultSandboxImage1, nriOff: true},
		{opts: Options{}, wantErr: "Options.RuntimeVersion or Options.Major"},
		{opts: Options{Major: 3}, wantErr: "want 1 or 2"},
	} {
		info, err := DefaultsFor(tt.opts)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("DefaultsFor(%+v) err = %v, want %q", tt.opts, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("DefaultsFor(%+v): %v", tt.opts, err)
			continue
		}
		if info.Line != tt.line || info.LineAssumed != tt.assumed || info.SandboxImage != tt.sandbox ||
			info.RegistryConfigPath != tt.configPath || info.NRI.Disabled != tt.nriOff || len(info.Files) != 0 {
			t.Errorf("DefaultsFor(%+v) = %+v", tt.opts, info)
		}
	}
}

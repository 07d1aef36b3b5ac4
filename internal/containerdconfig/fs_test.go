package containerdconfig

import (
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

// node is a node's root file system as install sees it under /host.
func node() fstest.MapFS {
	return fstest.MapFS{
		"etc/containerd/config.toml": {Data: []byte(`version = 3
imports = ["/etc/containerd/config.d/*.toml", "extra/*.toml"]
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "example.com/pause:main"
`)},
		"etc/containerd/config.d/10-registry.toml": {Data: []byte(`version = 3
[plugins."io.containerd.cri.v1.images".registry]
  config_path = "/etc/containerd/certs.d"
`)},
		"etc/containerd/config.d/90-sandbox.toml": {Data: []byte(`version = 3
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "example.com/pause:dropin"
`)},
		"etc/containerd/config.d/notes.txt": {Data: []byte("not a drop-in")},
	}
}

func TestLoadFS(t *testing.T) {
	nri := []byte("version = 3\n[plugins.\"io.containerd.nri.v1.nri\"]\n  socket_path = \"/run/nri/sg.sock\"\n")
	tests := []struct {
		name    string
		path    string
		overlay map[string][]byte
		files   []string
		sandbox string
		socket  string
		wantErr string
		missing bool // the error wraps fs.ErrNotExist
	}{
		{
			name:    "as on disk",
			path:    "/etc/containerd/config.toml",
			files:   []string{"/etc/containerd/config.toml", "/etc/containerd/config.d/10-registry.toml", "/etc/containerd/config.d/90-sandbox.toml"},
			sandbox: "example.com/pause:dropin",
			socket:  DefaultNRISocketPath,
		},
		{
			name:    "a drop-in about to be written is globbed in name order",
			path:    "/etc/containerd/config.toml",
			overlay: map[string][]byte{"/etc/containerd/config.d/50-nri.toml": nri},
			files:   []string{"/etc/containerd/config.toml", "/etc/containerd/config.d/10-registry.toml", "/etc/containerd/config.d/50-nri.toml", "/etc/containerd/config.d/90-sandbox.toml"},
			sandbox: "example.com/pause:dropin",
			socket:  "/run/nri/sg.sock",
		},
		{
			name: "a file about to be removed is not loaded, an overlay file in a new directory is",
			path: "/etc/containerd/config.toml",
			overlay: map[string][]byte{
				"/etc/containerd/config.d/90-sandbox.toml": nil,
				"/etc/containerd/extra/nri.toml":           nri,
			},
			files:   []string{"/etc/containerd/config.toml", "/etc/containerd/config.d/10-registry.toml", "/etc/containerd/extra/nri.toml"},
			sandbox: "example.com/pause:main",
			socket:  "/run/nri/sg.sock",
		},
		{
			name:    "the main file replaced",
			path:    "/etc/containerd/config.toml",
			overlay: map[string][]byte{"/etc/containerd/config.toml": []byte("version = 3\n")},
			files:   []string{"/etc/containerd/config.toml"},
			sandbox: DefaultSandboxImage2,
			socket:  DefaultNRISocketPath,
		},
		{
			name:    "an unclean main path is opened as given",
			path:    "/etc/containerd//config.toml",
			files:   []string{"/etc/containerd//config.toml", "/etc/containerd/config.d/10-registry.toml", "/etc/containerd/config.d/90-sandbox.toml"},
			sandbox: "example.com/pause:dropin",
			socket:  DefaultNRISocketPath,
		},
		{
			name:    "missing main file names the node path",
			path:    "/etc/containerd/other.toml",
			wantErr: "read containerd config /etc/containerd/other.toml: open /etc/containerd/other.toml:",
			missing: true,
		},
		{
			name:    "a removed main file is missing",
			path:    "/etc/containerd/config.toml",
			overlay: map[string][]byte{"/etc/containerd/config.toml": nil},
			wantErr: "/etc/containerd/config.toml",
			missing: true,
		},
		{
			name:    "relative path",
			path:    "etc/containerd/config.toml",
			wantErr: "want an absolute node path",
		},
		{
			name:    "unclean overlay path",
			path:    "/etc/containerd/config.toml",
			overlay: map[string][]byte{"/etc/containerd/config.d/../x.toml": nri},
			wantErr: "want a clean absolute node path",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := LoadFS(node(), tt.path, Options{Overlay: tt.overlay})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if got := errors.Is(err, fs.ErrNotExist); got != tt.missing {
					t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v", got, tt.missing)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(info.Files, tt.files) {
				t.Errorf("Files = %q, want %q", info.Files, tt.files)
			}
			if info.SandboxImage != tt.sandbox || info.NRI.SocketPath != tt.socket {
				t.Errorf("SandboxImage, NRI.SocketPath = %q, %q; want %q, %q", info.SandboxImage, info.NRI.SocketPath, tt.sandbox, tt.socket)
			}
			if info.Line != Line22 || !info.LineAssumed {
				t.Errorf("Line = %v (assumed %v), want 2.2 assumed", info.Line, info.LineAssumed)
			}
		})
	}
}

func TestCompareByElement(t *testing.T) {
	got := []string{"/a-b/x.toml", "/a/y.toml", "/a/x.toml", "/a.d/x.toml"}
	// filepath.Glob("/*/*.toml") lists directory "a" before "a-b" and "a.d".
	want := []string{"/a/x.toml", "/a/y.toml", "/a-b/x.toml", "/a.d/x.toml"}
	sortByElement(got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sorted %q, want %q", got, want)
	}
}

package keeper_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "busybox", want: "docker.io/library/busybox:latest"},
		{in: "busybox:1.36", want: "docker.io/library/busybox:1.36"},
		{in: "library/busybox", want: "docker.io/library/busybox:latest"},
		{in: "docker.io/calico/node:v3.28.0", want: "docker.io/calico/node:v3.28.0"},
		{in: "registry.k8s.io/pause:3.10", want: "registry.k8s.io/pause:3.10"},
		{in: "localhost:5000/pause", want: "localhost:5000/pause:latest"},
		{in: "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10", want: "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10"},
		{
			in:   "ubuntu@sha256:2e863c44b718727c860746568e1d54afd13b2fa71b160f5cd9058fc436217b30",
			want: "docker.io/library/ubuntu@sha256:2e863c44b718727c860746568e1d54afd13b2fa71b160f5cd9058fc436217b30",
		},
		{in: "", wantErr: true},
		{in: "Not A Reference", wantErr: true},
		{in: "registry.k8s.io/pause:bad tag", wantErr: true},
	}
	for _, tt := range tests {
		got, err := keeper.Normalize(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("Normalize(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

const archiveDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

const (
	eksUSWest2   = "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10"
	eksEUCentral = "602401143452.dkr.ecr.eu-central-1.amazonaws.com/eks/pause:3.10"
	eksPublic    = "public.ecr.aws/eks-distro/kubernetes/pause:3.10"
	k8sPause     = "registry.k8s.io/pause:3.10"
	eksArchive   = "oci-archive:/etc/eks/pause.tar"
)

// regionFunc counts its calls and answers region or err.
type regionFunc struct {
	calls  int
	region string
	err    error
}

func (r *regionFunc) get(context.Context) (string, error) {
	r.calls++
	return r.region, r.err
}

func TestResolveTargets(t *testing.T) {
	// Info as containerdconfig reports it for a node whose containerd names an image of the
	// wrong account (the case eks fallbacks rescue).
	info := &containerdconfig.Info{
		SandboxImage:     "111122223333.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10",
		SandboxImageFile: "/etc/containerd/config.toml",
	}
	infoName := info.SandboxImage
	defaulted := &containerdconfig.Info{SandboxImage: containerdconfig.DefaultSandboxImage2, SandboxImageDefaulted: true}

	tests := []struct {
		name        string
		cfg         func(c *config.Config)
		info        *containerdconfig.Info
		region      regionFunc
		want        []keeper.Target
		wantNotes   []string // substrings, one per note, in order
		wantErr     []string // substrings
		wantRegions int      // RegionFunc calls
	}{
		{
			name: "explicit short reference is normalized",
			cfg:  func(c *config.Config) { c.SandboxImage = "busybox" },
			want: []keeper.Target{{Name: "docker.io/library/busybox:latest", Role: "sandbox image", Sources: []string{"docker.io/library/busybox:latest"}}},
		},
		{
			name: "explicit reference with fallbacks, duplicates removed",
			cfg: func(c *config.Config) {
				c.SandboxImage = "registry.k8s.io/pause:3.10"
				c.SandboxImageFallbacks = []string{"registry.k8s.io/pause:3.10", "busybox", "docker.io/library/busybox:latest", "mirror.test/pause:3.10", "mirror.test/pause:3.10"}
			},
			want: []keeper.Target{{Name: k8sPause, Role: "sandbox image", Sources: []string{k8sPause, "docker.io/library/busybox:latest", "mirror.test/pause:3.10"}}},
		},
		{
			name: "explicit reference equal to containerd's: no warning",
			cfg:  func(c *config.Config) { c.SandboxImage = "registry.k8s.io/pause:3.10.1" },
			info: defaulted,
			want: []keeper.Target{{Name: "registry.k8s.io/pause:3.10.1", Role: "sandbox image", Sources: []string{"registry.k8s.io/pause:3.10.1"}}},
		},
		{
			name:      "explicit reference differing from containerd's: warning",
			cfg:       func(c *config.Config) { c.SandboxImage = "registry.k8s.io/pause:3.9" },
			info:      info,
			want:      []keeper.Target{{Name: "registry.k8s.io/pause:3.9", Role: "sandbox image", Sources: []string{"registry.k8s.io/pause:3.9"}}},
			wantNotes: []string{"warning: sandboxImage registry.k8s.io/pause:3.9 differs from containerd's " + infoName + ": CRI uses containerd's"},
		},
		{
			name:    "explicit reference invalid",
			cfg:     func(c *config.Config) { c.SandboxImage = "Not A Reference" },
			wantErr: []string{"sandboxImage", `"Not A Reference" is not an image reference`},
		},
		{
			name: "invalid fallback",
			cfg: func(c *config.Config) {
				c.SandboxImage = "busybox"
				c.SandboxImageFallbacks = []string{"docker.io/Library/Busybox"}
			},
			wantErr: []string{"sandboxImage", `"docker.io/Library/Busybox" is not an image reference`},
		},
		{
			name: "archive fallbacks stay as written, duplicates removed",
			cfg: func(c *config.Config) {
				c.SandboxImage = "localhost/kubernetes/pause"
				c.SandboxImageFallbacks = []string{eksArchive, "registry.k8s.io/pause:3.10", eksArchive, "oci-archive:/var/lib/images/pause.tar@" + archiveDigest}
			},
			want: []keeper.Target{{Name: "localhost/kubernetes/pause:latest", Role: "sandbox image", Sources: []string{
				"localhost/kubernetes/pause:latest", eksArchive, k8sPause, "oci-archive:/var/lib/images/pause.tar@" + archiveDigest,
			}}},
		},
		{
			name: "invalid archive fallback",
			cfg: func(c *config.Config) {
				c.SandboxImage = "busybox"
				c.SandboxImageFallbacks = []string{"oci-archive:pause.tar"}
			},
			wantErr: []string{"sandboxImage", `"pause.tar" is not an absolute, clean path`},
		},
		{
			name:      "auto takes containerd's image",
			cfg:       func(c *config.Config) { c.SandboxImage = "auto" },
			info:      info,
			want:      []keeper.Target{{Name: infoName, Role: "sandbox image", Sources: []string{infoName}}},
			wantNotes: []string{"sandbox image " + infoName + " from containerd's configuration (/etc/containerd/config.toml)"},
		},
		{
			name: "auto with containerd's default and fallbacks",
			cfg: func(c *config.Config) {
				c.SandboxImage = "auto"
				c.SandboxImageFallbacks = []string{"mirror.test/pause:3.10.1"}
			},
			info:      defaulted,
			want:      []keeper.Target{{Name: "registry.k8s.io/pause:3.10.1", Role: "sandbox image", Sources: []string{"registry.k8s.io/pause:3.10.1", "mirror.test/pause:3.10.1"}}},
			wantNotes: []string{"(containerd's default)"},
		},
		{
			name:    "auto without containerd's configuration",
			cfg:     func(c *config.Config) { c.SandboxImage = "auto" },
			wantErr: []string{"sandboxImage: auto needs containerd's configuration (containerd.configFile)"},
		},
		{
			name: "eks with a region: containerd's name, then the region's image and the public copies",
			cfg:  func(c *config.Config) { c.SandboxImage = "eks"; c.EKS.Region = "us-west-2" },
			info: info,
			want: []keeper.Target{{Name: infoName, Role: "sandbox image", Sources: []string{infoName, eksUSWest2, eksPublic, k8sPause, eksArchive}}},
			wantNotes: []string{
				"sandbox image " + infoName + " from containerd's configuration",
			},
		},
		{
			name: "eks with a region and no containerd configuration: the region's image is the name",
			cfg:  func(c *config.Config) { c.SandboxImage = "eks"; c.EKS.Region = "us-west-2" },
			want: []keeper.Target{{Name: eksUSWest2, Role: "sandbox image", Sources: []string{eksUSWest2, eksPublic, k8sPause, eksArchive}}},
			wantNotes: []string{
				"sandbox image " + eksUSWest2 + " (EKS pause image of us-west-2)",
			},
		},
		{
			name:        "eks without a region asks instance metadata",
			cfg:         func(c *config.Config) { c.SandboxImage = "eks" },
			region:      regionFunc{region: "eu-central-1"},
			want:        []keeper.Target{{Name: eksEUCentral, Role: "sandbox image", Sources: []string{eksEUCentral, eksPublic, k8sPause, eksArchive}}},
			wantNotes:   []string{"(EKS pause image of eu-central-1)"},
			wantRegions: 1,
		},
		{
			name:        "eks without a region when instance metadata fails",
			cfg:         func(c *config.Config) { c.SandboxImage = "eks" },
			info:        info,
			region:      regionFunc{err: errors.New("asking instance metadata for the region (not on EC2? configure the region): dial tcp 169.254.169.254:80: connect: network is unreachable")},
			wantErr:     []string{"sandboxImage: eks", "eks.region", "network is unreachable"},
			wantRegions: 1,
		},
		{
			name: "eks with another pause version and FIPS",
			cfg: func(c *config.Config) {
				c.SandboxImage = "eks"
				c.EKS = config.EKS{Region: "us-gov-west-1", FIPS: true, PauseVersion: "3.9"}
			},
			want: []keeper.Target{{Name: "013241004608.dkr.ecr-fips.us-gov-west-1.amazonaws.com/eks/pause:3.9", Role: "sandbox image", Sources: []string{
				"013241004608.dkr.ecr-fips.us-gov-west-1.amazonaws.com/eks/pause:3.9",
				"public.ecr.aws/eks-distro/kubernetes/pause:3.9",
				"registry.k8s.io/pause:3.9",
				eksArchive,
			}}},
			wantNotes: []string{"(EKS pause image of us-gov-west-1)"},
		},
		{
			name: "eks with configured fallbacks uses them instead of the defaults",
			cfg: func(c *config.Config) {
				c.SandboxImage = "eks"
				c.EKS.Region = "us-west-2"
				c.SandboxImageFallbacks = []string{"mirror.test/pause:3.10"}
			},
			info:      info,
			want:      []keeper.Target{{Name: infoName, Role: "sandbox image", Sources: []string{infoName, "mirror.test/pause:3.10"}}},
			wantNotes: []string{"from containerd's configuration"},
		},
		{
			name: "no sandbox image, pinned images with fallbacks",
			cfg: func(c *config.Config) {
				c.SandboxImage = ""
				c.PinImages = []config.PinImage{
					{Image: "calico/node:v3.28.0", Fallbacks: []string{"quay.io/calico/node:v3.28.0", "calico/node:v3.28.0", "quay.io/calico/node:v3.28.0"}},
					{Image: "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.19.0"},
				}
			},
			want: []keeper.Target{
				{Name: "docker.io/calico/node:v3.28.0", Role: "pinned image", Sources: []string{"docker.io/calico/node:v3.28.0", "quay.io/calico/node:v3.28.0"}},
				{Name: "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.19.0", Role: "pinned image", Sources: []string{"602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.19.0"}},
			},
		},
		{
			name: "sandbox image first, then pinned images",
			cfg: func(c *config.Config) {
				c.SandboxImage = "auto"
				c.PinImages = []config.PinImage{{Image: "busybox"}}
			},
			info: info,
			want: []keeper.Target{
				{Name: infoName, Role: "sandbox image", Sources: []string{infoName}},
				{Name: "docker.io/library/busybox:latest", Role: "pinned image", Sources: []string{"docker.io/library/busybox:latest"}},
			},
			wantNotes: []string{"from containerd's configuration"},
		},
		{
			name: "invalid pinned image names its index",
			cfg: func(c *config.Config) {
				c.SandboxImage = ""
				c.PinImages = []config.PinImage{{Image: "busybox"}, {Image: "busybox", Fallbacks: []string{"::bad"}}}
			},
			wantErr: []string{"pinImages[1]", `"::bad"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.EKS.Region = ""
			tt.cfg(cfg)
			rf := tt.region
			res, err := keeper.ResolveTargets(context.Background(), cfg, tt.info, rf.get)
			if rf.calls != tt.wantRegions {
				t.Errorf("RegionFunc called %d times, want %d", rf.calls, tt.wantRegions)
			}
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error; targets %+v", res.Targets)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveTargets: %v", err)
			}
			if !reflect.DeepEqual(res.Targets, tt.want) {
				t.Errorf("targets\n got %+v\nwant %+v", res.Targets, tt.want)
			}
			if len(res.Notes) != len(tt.wantNotes) {
				t.Fatalf("notes %q, want %d", res.Notes, len(tt.wantNotes))
			}
			for i, w := range tt.wantNotes {
				if !strings.Contains(res.Notes[i], w) {
					t.Errorf("note %d %q does not contain %q", i, res.Notes[i], w)
				}
			}
		})
	}
}

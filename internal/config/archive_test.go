package config

import (
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

const pinned = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseArchiveSource(t *testing.T) {
	for _, tc := range []struct {
		in      string
		archive bool // starts with the prefix
		want    ArchiveSource
		wantErr string // a substring of the error; "" for none
	}{
		{in: "oci-archive:/etc/eks/pause.tar", archive: true, want: ArchiveSource{Path: "/etc/eks/pause.tar"}},
		{in: "oci-archive:/etc/eks/pause.tar@" + pinned, archive: true, want: ArchiveSource{Path: "/etc/eks/pause.tar", Digest: digest.Digest(pinned)}},
		{in: "oci-archive:/srv/images@2026/pause.tar", archive: true, want: ArchiveSource{Path: "/srv/images@2026/pause.tar"}},
		{in: "oci-archive:/srv/a@b/pause.tar@" + pinned, archive: true, want: ArchiveSource{Path: "/srv/a@b/pause.tar", Digest: digest.Digest(pinned)}},
		{in: "oci-archive:etc/eks/pause.tar", archive: true, wantErr: `"etc/eks/pause.tar" is not an absolute, clean path`},
		{in: "oci-archive:", archive: true, wantErr: `"" is not an absolute, clean path`},
		{in: "oci-archive:/etc/eks/../eks/pause.tar", archive: true, wantErr: "is not an absolute, clean path"},
		{in: "oci-archive:/etc/eks/", archive: true, wantErr: "is not an absolute, clean path"},
		{in: "oci-archive:/etc/eks/pause.tar@sha256:abc", archive: true, wantErr: `"sha256:abc" is not an image digest`},
		{in: "oci-archive:/etc/eks/pause.tar@md5:" + strings.Repeat("0", 32), archive: true, wantErr: "is not an image digest"},
		{in: "oci-archive:@" + pinned, archive: true, wantErr: `"" is not an absolute, clean path`},
		{in: "registry.k8s.io/pause:3.10", archive: false},
		{in: "/etc/eks/pause.tar", archive: false},
		{in: "OCI-ARCHIVE:/etc/eks/pause.tar", archive: false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, archive, err := ParseArchiveSource(tc.in)
			if archive != tc.archive {
				t.Fatalf("archive = %v, want %v", archive, tc.archive)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %+v, %v; want %+v", got, err, tc.want)
			}
			if archive && got.String() != tc.in {
				t.Errorf("String() = %q, want it written as configured, %q", got.String(), tc.in)
			}
		})
	}
}

// Fallbacks take image references and archives; the image to keep itself must be a reference.
func TestArchiveFallbackValidation(t *testing.T) {
	for _, tc := range []errCase{
		{"sandbox fallback relative archive", "sandboxImageFallbacks: [registry.k8s.io/pause:3.10, oci-archive:pause.tar]", "sandboxImageFallbacks[1]", `"pause.tar" is not an absolute, clean path`},
		{"sandbox fallback bad digest", "sandboxImageFallbacks: [oci-archive:/etc/eks/pause.tar@sha256:1]", "sandboxImageFallbacks[0]", "is not an image digest"},
		{"sandbox fallback neither", "sandboxImageFallbacks: [/etc/eks/pause.tar]", "sandboxImageFallbacks[0]", "or oci-archive:/path/to/image.tar for an image archive"},
		{"pin fallback relative archive", "pinImages: [{image: registry.k8s.io/pause:3.10, fallbacks: [oci-archive:x.tar]}]", "pinImages[0].fallbacks[0]", "is not an absolute, clean path"},
		{"sandbox image is an archive", "sandboxImage: oci-archive:/etc/eks/pause.tar", "sandboxImage", "is not an image reference"},
		{"pinned image is an archive", "pinImages: [{image: oci-archive:/etc/eks/pause.tar}]", "pinImages[0].image", "is not an image reference"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), testSource)
			assertConfigError(t, err, testSource, tc)
		})
	}

	cfg, err := Parse([]byte("sandboxImageFallbacks: [oci-archive:/etc/eks/pause.tar, registry.k8s.io/pause:3.10]\n"+
		"pinImages: [{image: registry.k8s.io/pause:3.10, fallbacks: [oci-archive:/var/lib/images/pause.tar@"+pinned+"]}]\n"), testSource)
	if err != nil {
		t.Fatalf("valid archive fallbacks refused: %v", err)
	}
	if want := []string{"oci-archive:/etc/eks/pause.tar", "registry.k8s.io/pause:3.10"}; !slices.Equal(cfg.SandboxImageFallbacks, want) {
		t.Errorf("sandboxImageFallbacks = %v, want %v", cfg.SandboxImageFallbacks, want)
	}
}

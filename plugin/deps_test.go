package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// heavy are packages the plugin binary must not link: each was cut for what it cost in binary
// size (every linked page ends up mapped, docs/benchmarks.md section 5) or in heap at start,
// for a feature the plugin does not use. A change that brings one back fails here, naming it.
var heavy = map[string]string{
	"golang.org/x/net/trace":              "gRPC's request tracing (build tag grpcnotrace)",
	"text/template":                       "html/template behind x/net/trace: the linker keeps every exported method (7.5 MiB)",
	"github.com/gogo/protobuf/proto":      "typeurl's gogo handler (build tag no_gogo); nothing registers gogo types",
	"github.com/aws/aws-sdk-go-v2/config": "config.LoadDefaultConfig and its SSO, SSO-OIDC and login clients (internal/ecr/chain.go builds the node's chain)",
	"k8s.io/apimachinery/pkg/runtime":     "Kubernetes' API machinery behind metav1, for one label selector (config.LabelSelector)",
}

// TestBinaryLinksNoHeavyPackage lists what `make build` links (its build tags, read from the
// Makefile) and fails on any package of heavy.
func TestBinaryLinksNoHeavyPackage(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^BUILD_TAGS := (\S+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile has no BUILD_TAGS line")
	}
	cmd := exec.Command("go", "list", "-deps", "-tags", string(m[1]), ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, d := range deps {
		for p, why := range heavy {
			if d == p || strings.HasPrefix(d, p+"/") {
				t.Errorf("the plugin links %s: %s", d, why)
			}
		}
	}
	if len(deps) < 10 {
		t.Fatalf("go list -deps printed %d packages: %q", len(deps), out)
	}
}

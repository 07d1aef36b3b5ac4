package keeper_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/sandbox-guard/sandbox-guard/internal/keeper/keepertest"
)

// The fake the keeper's tests run on meets the same contract as real containerd (the
// end-to-end tests run the suite there: test/e2e/conformance_test.go).
func TestConformance(t *testing.T) {
	const host, user, secret = "registry.test:5000", "AWS", "fake-ecr-token"
	f := keepertest.NewFake()
	f.RequireCredentials(user, secret)
	var mu sync.Mutex
	served := 0
	keepertest.Conformance(t, keepertest.Subject{
		Images: f,
		Pullable: func(*testing.T) keepertest.Pullable {
			mu.Lock()
			defer mu.Unlock()
			served++
			ref := fmt.Sprintf("%s/conformance/pause:v%d", host, served)
			desc, cfg := f.ServeAuth(ref, ref)
			return keepertest.Pullable{Ref: ref, Target: desc.Digest, Config: cfg}
		},
		Creds: func(_ context.Context, h string) (string, string, error) {
			if h != host {
				return "", "", nil
			}
			return user, secret, nil
		},
		Missing: host + "/conformance/pause:missing",
		Delete: func(t *testing.T, name string) {
			if err := f.Delete(name); err != nil {
				t.Fatalf("deleting %s: %v", name, err)
			}
		},
	})
}

package keeper_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/sandbox-guard/sandbox-guard/internal/ecr"
	"github.com/sandbox-guard/sandbox-guard/internal/ecr/ecrtest"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper/keepertest"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

const (
	ecrHost     = "registry.test:5000"
	ecrRegion   = "us-west-2"
	ecrPassword = "eyJwYXlsb2FkIjoiZmFrZS1lY3ItcGFzc3dvcmQtZm9yLWtlZXBlci10ZXN0cyJ9"
)

// ecrProvider is a real ecr.Provider talking to a fake ECR API through the real SDK, with
// registry.test:5000 declared as an ECR registry of us-west-2.
func ecrProvider(t *testing.T, srv *ecrtest.Server, now func() time.Time) *ecr.Provider {
	t.Helper()
	// Keep the SDK away from the AWS files of whoever runs the tests.
	dir := t.TempDir()
	cfgFile, credFile := filepath.Join(dir, "config"), filepath.Join(dir, "credentials")
	for _, f := range []string{cfgFile, credFile} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ecr.NewProvider(ecr.Options{
		Resolver: ecr.Resolver{Declared: map[string]string{ecrHost: ecrRegion}},
		NewClient: ecr.NewClientFactory(ecr.ClientConfig{
			BaseEndpoint:           srv.URL,
			Credentials:            credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
			RetryMaxAttempts:       1,
			SharedConfigFiles:      []string{cfgFile},
			SharedCredentialsFiles: []string{credFile},
		}),
		Timeout: 10 * time.Second,
		Now:     now,
	})
}

// barrier lets n callers through together. If they do not all arrive in time it lets everyone
// through and records that they did not overlap.
type barrier struct {
	n        int
	arrived  atomic.Int32
	timedOut atomic.Bool
	all      chan struct{}
	once     sync.Once
}

func newBarrier(n int) *barrier { return &barrier{n: n, all: make(chan struct{})} }

func (b *barrier) wait() {
	if int(b.arrived.Add(1)) >= b.n {
		b.once.Do(func() { close(b.all) })
	}
	select {
	case <-b.all:
	case <-time.After(5 * time.Second):
		b.timedOut.Store(true)
		b.once.Do(func() { close(b.all) })
	}
}

func ecrTargets(n int) []keeper.Target {
	var out []keeper.Target
	for i := range n {
		name := fmt.Sprintf("%s/team/image-%02d:1", ecrHost, i)
		out = append(out, keeper.Target{Name: name, Role: "pinned image", Sources: []string{name}})
	}
	return out
}

func TestConcurrentEnsuresShareOneToken(t *testing.T) {
	const n = 25
	clock := newClock()
	srv := ecrtest.NewServer(ecrtest.Config{Password: ecrPassword, Now: clock.Now})
	defer srv.Close()
	log, hook := testutil.CaptureLogger()
	p := ecrProvider(t, srv, clock.Now)

	f := keepertest.NewFake()
	f.RequireCredentials(ecrtest.DefaultUsername, ecrPassword)
	targets := ecrTargets(n)
	for _, tg := range targets {
		f.ServeAuth(tg.Name, tg.Name)
	}
	var gate atomic.Pointer[barrier]
	f.OnPull(func(context.Context, string) { gate.Load().wait() })
	k, _ := newKeeper(f, keeper.Options{Targets: targets, Credentials: keeper.ECRCredentials(p), Now: clock.Now})

	ensureAll := func(round string) []error {
		t.Helper()
		gate.Store(newBarrier(n))
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { errs[i] = k.Ensure(testutil.Context(log), i) })
		}
		wg.Wait()
		if gate.Load().timedOut.Load() {
			t.Errorf("%s: the %d ensures did not run concurrently", round, n)
		}
		for i, err := range errs {
			if err != nil {
				t.Errorf("%s: Ensure(%d): %v", round, i, err)
			}
		}
		return errs
	}
	forgetImages := func() {
		for _, name := range f.RecordNames() {
			f.Remove(name, true)
		}
	}

	var allErrs []error
	allErrs = append(allErrs, ensureAll("first round")...)
	if got := srv.Calls(); got != 1 {
		t.Errorf("%d GetAuthorizationToken calls for %d concurrent ensures, want 1", got, n)
	}
	pulls := f.CallsOf("Pull")
	if len(pulls) != n {
		t.Fatalf("%d pulls, want %d", len(pulls), n)
	}
	for _, c := range pulls {
		if c.Host != ecrHost || c.User != ecrtest.DefaultUsername {
			t.Errorf("pull of %s asked credentials for %q and got user %q", c.Name, c.Host, c.User)
		}
	}
	for i, st := range k.Status() {
		if !st.Present || !st.Pinned {
			t.Errorf("target %d: %+v", i, st)
		}
	}

	// Still fresh: pulls in the first half of the token's lifetime reuse it.
	clock.Advance(6*time.Hour - time.Minute)
	forgetImages()
	allErrs = append(allErrs, ensureAll("before the half-life")...)
	if got := srv.Calls(); got != 1 {
		t.Errorf("%d GetAuthorizationToken calls before the half-life, want 1", got)
	}

	// Past the half-life of its 12h: exactly one more call, shared again.
	clock.Advance(2 * time.Minute)
	forgetImages()
	allErrs = append(allErrs, ensureAll("after the half-life")...)
	if got := srv.Calls(); got != 2 {
		t.Errorf("%d GetAuthorizationToken calls after the half-life, want 2", got)
	}
	if st := p.Stats(); st.Fetches != 2 || st.Errors != 0 {
		t.Errorf("provider stats %+v", st)
	}
	if r := srv.Regions(); r[ecrRegion] != 2 {
		t.Errorf("calls per region %v", r)
	}

	var texts []string
	for _, st := range k.Status() {
		texts = append(texts, fmt.Sprintf("%+v", st))
	}
	assertNoSecret(t, ecrPassword, hook, allErrs, texts...)
}

func TestECRCredentials(t *testing.T) {
	clock := newClock()
	srv := ecrtest.NewServer(ecrtest.Config{Password: ecrPassword, Now: clock.Now})
	defer srv.Close()
	log, hook := testutil.CaptureLogger()
	p := ecrProvider(t, srv, clock.Now)
	creds := keeper.ECRCredentials(p)
	ctx := testutil.Context(log)

	tests := []struct {
		host       string
		wantUser   string
		wantSecret string
		wantCalls  int // total, after the call
	}{
		{host: "docker.io", wantCalls: 0},
		{host: "registry-1.docker.io", wantCalls: 0},
		{host: "public.ecr.aws", wantCalls: 0},
		{host: "registry.k8s.io", wantCalls: 0},
		{host: "registry.test:5001", wantCalls: 0}, // declared with a port: only that port
		{host: ecrHost, wantUser: ecrtest.DefaultUsername, wantSecret: ecrPassword, wantCalls: 1},
		{host: "602401143452.dkr.ecr.us-west-2.amazonaws.com", wantUser: ecrtest.DefaultUsername, wantSecret: ecrPassword, wantCalls: 1},
		{host: "602401143452.dkr.ecr.eu-central-1.amazonaws.com", wantUser: ecrtest.DefaultUsername, wantSecret: ecrPassword, wantCalls: 2},
	}
	var errs []error
	for _, tt := range tests {
		user, secret, err := creds(ctx, tt.host)
		errs = append(errs, err)
		if err != nil {
			t.Errorf("%s: %v", tt.host, err)
			continue
		}
		if user != tt.wantUser || secret != tt.wantSecret {
			t.Errorf("%s: user %q, secret matches %v; want user %q, secret matches %v", tt.host, user, secret == ecrPassword, tt.wantUser, tt.wantSecret == ecrPassword)
		}
		if got := srv.Calls(); got != tt.wantCalls {
			t.Errorf("%s: %d ECR calls so far, want %d", tt.host, got, tt.wantCalls)
		}
	}

	// Through the keeper: an image on docker.io is pulled anonymously, without an ECR call.
	f := keepertest.NewFake()
	const hub = "docker.io/library/busybox:1.36"
	f.ServeAuth(hub, "hub") // wantUser and wantSecret empty: the registry takes anonymous pulls
	k, _ := newKeeper(f, keeper.Options{Targets: []keeper.Target{{Name: hub, Role: "pinned image", Sources: []string{hub}}}, Credentials: creds})
	calls := srv.Calls()
	err := k.Ensure(ctx, 0)
	errs = append(errs, err)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if pulls := f.CallsOf("Pull"); len(pulls) != 1 || pulls[0].Host != "docker.io" || pulls[0].User != "" {
		t.Errorf("pulls %+v, want one anonymous pull from docker.io", pulls)
	}
	if got := srv.Calls(); got != calls {
		t.Errorf("%d ECR calls for a docker.io image", got-calls)
	}
	assertNoSecret(t, ecrPassword, hook, errs)
}

func TestECRRefusalSurfacesWithoutToken(t *testing.T) {
	clock := newClock()
	srv := ecrtest.NewServer(ecrtest.Config{Password: ecrPassword, Now: clock.Now})
	defer srv.Close()
	log, hook := testutil.CaptureLogger()
	p := ecrProvider(t, srv, clock.Now)

	f := keepertest.NewFake()
	f.RequireCredentials(ecrtest.DefaultUsername, ecrPassword)
	targets := ecrTargets(1)
	f.ServeAuth(targets[0].Name, "x")
	k, _ := newKeeper(f, keeper.Options{Targets: targets, Credentials: keeper.ECRCredentials(p)})
	ctx := testutil.Context(log)

	// A token is cached, then the image goes and the node loses its ECR permission after the
	// token's half-life: the cached token still serves (with a warning).
	if err := k.Ensure(ctx, 0); err != nil {
		t.Fatal(err)
	}
	var errs []error
	srv.SetMode(ecrtest.AccessDenied)
	clock.Advance(7 * time.Hour)
	for _, n := range f.RecordNames() {
		f.Remove(n, true)
	}
	err := k.Ensure(ctx, 0)
	errs = append(errs, err)
	if err != nil {
		t.Errorf("Ensure with a refused refresh but a usable token: %v", err)
	}

	// Once the token expires, the refusal is the error: one line, naming the image, the
	// region and the AWS error code, without the token.
	clock.Advance(5 * time.Hour)
	for _, n := range f.RecordNames() {
		f.Remove(n, true)
	}
	err = k.Ensure(ctx, 0)
	errs = append(errs, err)
	if err == nil {
		t.Fatal("Ensure succeeded without credentials")
	}
	for _, want := range []string{targets[0].Name, "ecr GetAuthorizationToken in " + ecrRegion, "AccessDeniedException"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	if got := srv.Calls(); got != 3 {
		t.Errorf("%d ECR calls, want 3", got)
	}
	assertNoSecret(t, ecrPassword, hook, errs, k.Status()[0].LastError)
}

package ecr

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/smithy-go"

	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

const (
	testHost     = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
	testPassword = "s3cr3t-password-value"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeAPI answers GetAuthorizationToken from respond, counting calls per region.
type fakeAPI struct {
	region  string
	mu      *sync.Mutex
	calls   *int
	respond func(ctx context.Context, call int) (*ecr.GetAuthorizationTokenOutput, error)
}

func (f fakeAPI) GetAuthorizationToken(ctx context.Context, _ *ecr.GetAuthorizationTokenInput, _ ...func(*ecr.Options)) (*ecr.GetAuthorizationTokenOutput, error) {
	f.mu.Lock()
	*f.calls++
	n := *f.calls
	f.mu.Unlock()
	return f.respond(ctx, n)
}

// fakeAPIs is a ClientFactory handing out fakeAPIs, counting what it did.
type fakeAPIs struct {
	mu       sync.Mutex
	made     map[string]int // clients made per region
	calls    int            // API calls, all regions
	respond  func(ctx context.Context, region string, call int) (*ecr.GetAuthorizationTokenOutput, error)
	failMake error
}

func (fs *fakeAPIs) factory(_ context.Context, region string) (API, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.failMake != nil {
		return nil, fs.failMake
	}
	if fs.made == nil {
		fs.made = map[string]int{}
	}
	fs.made[region]++
	return fakeAPI{region: region, mu: &fs.mu, calls: &fs.calls, respond: func(ctx context.Context, call int) (*ecr.GetAuthorizationTokenOutput, error) {
		return fs.respond(ctx, region, call)
	}}, nil
}

func (fs *fakeAPIs) Calls() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.calls
}

func tokenOutput(user, pass string, expires time.Time) *ecr.GetAuthorizationTokenOutput {
	tok := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	return &ecr.GetAuthorizationTokenOutput{AuthorizationData: []types.AuthorizationData{{
		AuthorizationToken: aws.String(tok),
		ExpiresAt:          aws.Time(expires),
		ProxyEndpoint:      aws.String("https://" + testHost),
	}}}
}

// newTestProvider returns a Provider over fs whose tokens live for lifetime from clock's now;
// the password of the nth call is testPassword-n.
func newTestProvider(t *testing.T, clock *fakeClock, lifetime time.Duration) (*Provider, *fakeAPIs) {
	t.Helper()
	fs := &fakeAPIs{respond: func(_ context.Context, _ string, call int) (*ecr.GetAuthorizationTokenOutput, error) {
		return tokenOutput("AWS", fmt.Sprintf("%s-%d", testPassword, call), clock.Now().Add(lifetime)), nil
	}}
	p := NewProvider(Options{NewClient: fs.factory, Now: clock.Now})
	return p, fs
}

func mustCredentials(t *testing.T, p *Provider, host string) Credentials {
	t.Helper()
	c, err := p.Credentials(context.Background(), host)
	if err != nil {
		t.Fatalf("Credentials(%s): %v", host, err)
	}
	return c
}

func TestProviderDecodes(t *testing.T) {
	clock := newFakeClock()
	p, _ := newTestProvider(t, clock, 12*time.Hour)
	c := mustCredentials(t, p, testHost)
	want := Credentials{Username: "AWS", Password: testPassword + "-1", ExpiresAt: clock.Now().Add(12 * time.Hour)}
	if c != want {
		t.Errorf("got %#v (password %q), want %#v", c, c.Password, want)
	}
}

func TestProviderCachesUntilHalfLifetime(t *testing.T) {
	clock := newFakeClock()
	p, fs := newTestProvider(t, clock, 12*time.Hour)

	first := mustCredentials(t, p, testHost)
	clock.Advance(6*time.Hour - time.Second)
	if c := mustCredentials(t, p, testHost); c != first || fs.Calls() != 1 {
		t.Fatalf("before half-life: calls=%d, got a different token: %v", fs.Calls(), c != first)
	}
	// Another host in the same region shares the token.
	if c := mustCredentials(t, p, "210987654321.dkr.ecr.us-west-2.amazonaws.com:443"); c != first || fs.Calls() != 1 {
		t.Fatalf("same region, other host: calls=%d", fs.Calls())
	}
	clock.Advance(time.Second)
	second := mustCredentials(t, p, testHost)
	if fs.Calls() != 2 || second.Password != testPassword+"-2" {
		t.Fatalf("at half-life: calls=%d, password changed: %v", fs.Calls(), second != first)
	}
	if st := p.Stats(); st.Fetches != 2 || st.Errors != 0 || st.Hits != 2 {
		t.Errorf("Stats() = %+v", st)
	}
}

// The half is of the lifetime left at fetch time: a token with 2h left is reused for 1h.
func TestProviderHalfOfRemainingLifetime(t *testing.T) {
	clock := newFakeClock()
	p, fs := newTestProvider(t, clock, 2*time.Hour)
	mustCredentials(t, p, testHost)
	clock.Advance(time.Hour - time.Millisecond)
	mustCredentials(t, p, testHost)
	if fs.Calls() != 1 {
		t.Fatalf("calls = %d before half of 2h", fs.Calls())
	}
	clock.Advance(time.Millisecond)
	mustCredentials(t, p, testHost)
	if fs.Calls() != 2 {
		t.Fatalf("calls = %d after half of 2h", fs.Calls())
	}
}

func TestProviderRefetchesAfterExpiry(t *testing.T) {
	clock := newFakeClock()
	p, fs := newTestProvider(t, clock, time.Hour)
	first := mustCredentials(t, p, testHost)
	clock.Advance(2 * time.Hour)
	if _, ok := p.Peek(testHost); ok {
		t.Error("Peek returned an expired token")
	}
	second := mustCredentials(t, p, testHost)
	if fs.Calls() != 2 || second == first {
		t.Fatalf("calls = %d, same token: %v", fs.Calls(), second == first)
	}
	if !second.ExpiresAt.Equal(clock.Now().Add(time.Hour)) {
		t.Errorf("expiry %v", second.ExpiresAt)
	}
}

func TestProviderOneCallForConcurrentCallers(t *testing.T) {
	clock := newFakeClock()
	release := make(chan struct{})
	fs := &fakeAPIs{respond: func(ctx context.Context, _ string, call int) (*ecr.GetAuthorizationTokenOutput, error) {
		<-release
		return tokenOutput("AWS", testPassword, clock.Now().Add(12*time.Hour)), nil
	}}
	p := NewProvider(Options{NewClient: fs.factory, Now: clock.Now})

	const n = 50
	var started, done sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			c, err := p.Credentials(context.Background(), testHost)
			if err == nil && c.Password != testPassword {
				err = errors.New("wrong password")
			}
			errs <- err
		}()
	}
	started.Wait()
	time.Sleep(20 * time.Millisecond) // let the callers pile up behind the first one
	close(release)
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if fs.Calls() != 1 {
		t.Errorf("%d callers caused %d API calls, want 1", n, fs.Calls())
	}
	if fs.made["us-west-2"] != 1 {
		t.Errorf("clients made: %v", fs.made)
	}
	if st := p.Stats(); st.Fetches != 1 {
		t.Errorf("Stats() = %+v", st)
	}
}

func TestProviderClientPerRegion(t *testing.T) {
	clock := newFakeClock()
	p, fs := newTestProvider(t, clock, 12*time.Hour)
	for _, host := range []string{
		testHost,
		"123456789012.dkr.ecr.eu-central-1.amazonaws.com",
		"123456789012.dkr-ecr.eu-central-1.on.aws",
		"918309763551.dkr.ecr.cn-north-1.amazonaws.com.cn",
	} {
		mustCredentials(t, p, host)
	}
	clock.Advance(7 * time.Hour)
	mustCredentials(t, p, testHost) // refetch with the cached client
	want := map[string]int{"us-west-2": 1, "eu-central-1": 1, "cn-north-1": 1}
	if fmt.Sprint(fs.made) != fmt.Sprint(want) {
		t.Errorf("clients made %v, want %v", fs.made, want)
	}
	if fs.Calls() != 4 {
		t.Errorf("calls = %d, want 4", fs.Calls())
	}
}

func TestProviderDeclaredHost(t *testing.T) {
	clock := newFakeClock()
	fs := &fakeAPIs{respond: func(_ context.Context, region string, _ int) (*ecr.GetAuthorizationTokenOutput, error) {
		return tokenOutput("AWS", region, clock.Now().Add(time.Hour)), nil
	}}
	p := NewProvider(Options{NewClient: fs.factory, Now: clock.Now, Resolver: Resolver{Declared: map[string]string{"127.0.0.1:5000": "eu-west-3"}}})
	if c := mustCredentials(t, p, "127.0.0.1:5000"); c.Password != "eu-west-3" {
		t.Errorf("declared host got the token of %q", c.Password)
	}
	_, err := p.Credentials(context.Background(), "public.ecr.aws")
	if !errors.Is(err, ErrNotECR) || !strings.Contains(err.Error(), "public.ecr.aws") {
		t.Errorf("public.ecr.aws: %v", err)
	}
	if _, err := p.Credentials(context.Background(), "127.0.0.1:5001"); !errors.Is(err, ErrNotECR) {
		t.Errorf("undeclared host: %v", err)
	}
	if fs.Calls() != 1 {
		t.Errorf("calls = %d", fs.Calls())
	}
}

func TestProviderErrors(t *testing.T) {
	exp := time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)
	b64 := func(s string) *string { return aws.String(base64.StdEncoding.EncodeToString([]byte(s))) }
	tests := []struct {
		name     string
		out      *ecr.GetAuthorizationTokenOutput
		err      error
		makeErr  error
		wantIs   error
		wantText string
	}{
		{name: "access denied", err: &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "User: x is not authorized"},
			wantText: "ecr GetAuthorizationToken in us-west-2: AccessDeniedException: User: x is not authorized"},
		{name: "throttled", err: &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"},
			wantText: "ecr GetAuthorizationToken in us-west-2: ThrottlingException: Rate exceeded"},
		{name: "modeled", err: &types.ServerException{Message: aws.String("boom")},
			wantText: "ecr GetAuthorizationToken in us-west-2: ServerException: boom"},
		{name: "plain error", err: errors.New("dial tcp: connection refused"),
			wantText: "ecr GetAuthorizationToken in us-west-2: dial tcp: connection refused"},
		{name: "client", makeErr: errors.New("loading AWS configuration for us-west-2: bad file"),
			wantText: "ecr GetAuthorizationToken in us-west-2: loading AWS configuration for us-west-2: bad file"},
		{name: "nil output", out: nil, wantIs: ErrNoToken},
		{name: "no data", out: &ecr.GetAuthorizationTokenOutput{}, wantIs: ErrNoToken},
		{name: "nil token", out: &ecr.GetAuthorizationTokenOutput{AuthorizationData: []types.AuthorizationData{{ExpiresAt: &exp}}}, wantIs: ErrNoToken},
		{name: "empty token", out: &ecr.GetAuthorizationTokenOutput{AuthorizationData: []types.AuthorizationData{{AuthorizationToken: aws.String(""), ExpiresAt: &exp}}}, wantIs: ErrNoToken},
		{name: "not base64", out: &ecr.GetAuthorizationTokenOutput{AuthorizationData: []types.AuthorizationData{{AuthorizationToken: aws.String("AWS:" + testPassword), ExpiresAt: &exp}}}, wantIs: ErrMalformedToken},
		{name: "no colon", out: &ecr.GetAuthorizationTokenOutput{AuthorizationData: []types.AuthorizationData{{AuthorizationToken: b64("AWS" + testPassword), ExpiresAt: &exp}}}, wantIs: ErrMalformedToken},
		{name: "no user", out: &ecr.GetAuthorizationTokenOutput{AuthorizationData: []types.AuthorizationData{{AuthorizationToken: b64(":" + testPassword), ExpiresAt: &exp}}}, wantIs: ErrMalformedToken},
		{name: "no password", out: &ecr.GetAuthorizationTokenOutput{AuthorizationData: []types.AuthorizationData{{AuthorizationToken: b64("AWS:"), ExpiresAt: &exp}}}, wantIs: ErrMalformedToken},
		{name: "no expiry", out: &ecr.GetAuthorizationTokenOutput{AuthorizationData: []types.AuthorizationData{{AuthorizationToken: b64("AWS:" + testPassword)}}}, wantIs: ErrNoExpiry},
		{name: "zero expiry", out: &ecr.GetAuthorizationTokenOutput{AuthorizationData: []types.AuthorizationData{{AuthorizationToken: b64("AWS:" + testPassword), ExpiresAt: &time.Time{}}}}, wantIs: ErrNoExpiry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			fs := &fakeAPIs{failMake: tt.makeErr, respond: func(context.Context, string, int) (*ecr.GetAuthorizationTokenOutput, error) {
				return tt.out, tt.err
			}}
			p := NewProvider(Options{NewClient: fs.factory, Now: clock.Now})
			c, err := p.Credentials(context.Background(), testHost)
			if err == nil {
				t.Fatalf("no error; got %v", c)
			}
			if c != (Credentials{}) {
				t.Errorf("credentials with an error: %v", c)
			}
			msg := err.Error()
			if strings.Contains(msg, testPassword) || strings.Contains(msg, base64.StdEncoding.EncodeToString([]byte("AWS:"+testPassword))) {
				t.Errorf("error shows the token: %s", msg)
			}
			if !strings.HasPrefix(msg, "ecr GetAuthorizationToken in us-west-2: ") {
				t.Errorf("error does not say what and where: %s", msg)
			}
			if tt.wantText != "" && msg != tt.wantText {
				t.Errorf("error %q, want %q", msg, tt.wantText)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", msg, tt.wantIs)
			}
			var e *Error
			if !errors.As(err, &e) || e.Region != "us-west-2" {
				t.Errorf("error %#v is not an *Error for us-west-2", err)
			}
			if tt.err != nil {
				var apiErr smithy.APIError
				if errors.As(tt.err, &apiErr) && (e.Code != apiErr.ErrorCode() || !errors.As(err, &apiErr)) {
					t.Errorf("code %q, want %q", e.Code, apiErr.ErrorCode())
				}
			}
			if st := p.Stats(); st.Errors != 1 {
				t.Errorf("Stats() = %+v", st)
			}
			if _, ok := p.Peek(testHost); ok {
				t.Error("a failure left something in the cache")
			}
		})
	}
}

// A failed refresh keeps handing out the current token while it has time left, and fails once
// it is about to expire.
func TestProviderKeepsTokenWhenRefreshFails(t *testing.T) {
	clock := newFakeClock()
	var fail bool
	var mu sync.Mutex
	fs := &fakeAPIs{respond: func(context.Context, string, int) (*ecr.GetAuthorizationTokenOutput, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return nil, &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}
		}
		return tokenOutput("AWS", testPassword, clock.Now().Add(12*time.Hour)), nil
	}}
	p := NewProvider(Options{NewClient: fs.factory, Now: clock.Now})
	first := mustCredentials(t, p, testHost)
	mu.Lock()
	fail = true
	mu.Unlock()

	clock.Advance(7 * time.Hour)
	if c, err := p.Credentials(context.Background(), testHost); err != nil || c != first {
		t.Fatalf("after a failed refresh: %v, %v", c, err)
	}
	clock.Advance(5*time.Hour - 30*time.Second) // 30s left: too little to start a pull with
	if _, err := p.Credentials(context.Background(), testHost); err == nil || !strings.Contains(err.Error(), "ThrottlingException") {
		t.Fatalf("near expiry: %v", err)
	}
	if c, ok := p.Peek(testHost); !ok || c != first {
		t.Errorf("Peek = %v, %v", c, ok)
	}
	if st := p.Stats(); st.Fetches != 3 || st.Errors != 2 {
		t.Errorf("Stats() = %+v", st)
	}
}

// A caller that gives up does not cancel the fetch for the others; its result is cached.
func TestProviderCallerGivesUp(t *testing.T) {
	clock := newFakeClock()
	release := make(chan struct{})
	fs := &fakeAPIs{respond: func(ctx context.Context, _ string, _ int) (*ecr.GetAuthorizationTokenOutput, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return tokenOutput("AWS", testPassword, clock.Now().Add(time.Hour)), nil
	}}
	p := NewProvider(Options{NewClient: fs.factory, Now: clock.Now})

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := p.Credentials(ctx, testHost)
		errc <- err
	}()
	testutil.WaitFor(t, "the API call to start", func() bool { return fs.Calls() > 0 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "us-west-2") {
		t.Fatalf("cancelled caller: %v", err)
	}
	close(release)
	c := mustCredentials(t, p, testHost)
	if c.Password != testPassword || fs.Calls() != 1 {
		t.Errorf("after the flight: %v, calls=%d", c, fs.Calls())
	}
}

func TestProviderTimeout(t *testing.T) {
	fs := &fakeAPIs{respond: func(ctx context.Context, _ string, _ int) (*ecr.GetAuthorizationTokenOutput, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	p := NewProvider(Options{NewClient: fs.factory, Timeout: 20 * time.Millisecond})
	_, err := p.Credentials(context.Background(), testHost)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "us-west-2") {
		t.Errorf("timeout: %v", err)
	}
}

func TestProviderExpiredOnArrival(t *testing.T) {
	clock := newFakeClock()
	p, fs := newTestProvider(t, clock, -time.Minute)
	mustCredentials(t, p, testHost)
	mustCredentials(t, p, testHost)
	if fs.Calls() != 2 {
		t.Errorf("an expired token was cached: calls=%d", fs.Calls())
	}
}

func TestProviderPeekAndForget(t *testing.T) {
	clock := newFakeClock()
	p, fs := newTestProvider(t, clock, 12*time.Hour)
	if _, ok := p.Peek(testHost); ok {
		t.Error("Peek before any fetch")
	}
	c := mustCredentials(t, p, testHost)
	if got, ok := p.Peek(testHost + ":443"); !ok || got != c {
		t.Errorf("Peek = %v, %v", got, ok)
	}
	if _, ok := p.Peek("docker.io"); ok {
		t.Error("Peek(docker.io)")
	}
	clock.Advance(7 * time.Hour) // past the refresh time, not expired: Peek still shows it
	if got, ok := p.Peek(testHost); !ok || got != c || fs.Calls() != 1 {
		t.Errorf("Peek after half-life = %v, %v (calls %d)", got, ok, fs.Calls())
	}
	p.Forget(testHost)
	if _, ok := p.Peek(testHost); ok {
		t.Error("Peek after Forget")
	}
	mustCredentials(t, p, testHost)
	if fs.Calls() != 2 {
		t.Errorf("calls = %d after Forget", fs.Calls())
	}
}

func TestCredentialsNeverPrintPassword(t *testing.T) {
	c := Credentials{Username: "AWS", Password: testPassword, ExpiresAt: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(f, c)
		if strings.Contains(out, testPassword) {
			t.Errorf("%s shows the password: %s", f, out)
		}
	}
	if got := c.String(); got != "AWS:<redacted> (expires 2025-06-01T00:00:00Z)" {
		t.Errorf("String() = %s", got)
	}
}

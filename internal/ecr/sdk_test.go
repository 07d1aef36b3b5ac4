package ecr

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"

	"github.com/sandbox-guard/sandbox-guard/internal/ecr/ecrtest"
)

// These tests run the real SDK client against ecrtest's fake API.

// sdkConfig points the real client at srv with dummy credentials, and keeps the SDK away from
// the AWS files of whoever runs the tests.
func sdkConfig(t *testing.T, srv *ecrtest.Server, attempts int) ClientConfig {
	t.Helper()
	dir := t.TempDir()
	cfgFile, credFile := filepath.Join(dir, "config"), filepath.Join(dir, "credentials")
	for _, f := range []string{cfgFile, credFile} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ClientConfig{
		BaseEndpoint:           srv.URL,
		Credentials:            credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		RetryMaxAttempts:       attempts,
		SharedConfigFiles:      []string{cfgFile},
		SharedCredentialsFiles: []string{credFile},
	}
}

func TestSDKCredentials(t *testing.T) {
	srv := ecrtest.NewServer(ecrtest.Config{Password: testPassword})
	defer srv.Close()
	p := NewProvider(Options{Client: sdkConfig(t, srv, 1)})

	before := time.Now()
	c := mustCredentials(t, p, testHost)
	if c.Username != "AWS" || c.Password != testPassword {
		t.Errorf("got %s / %q", c, c.Password)
	}
	// expiresAt travels as epoch seconds with milliseconds (1.712345678123E9).
	if lo, hi := before.Add(12*time.Hour-time.Second), time.Now().Add(12*time.Hour+time.Second); c.ExpiresAt.Before(lo) || c.ExpiresAt.After(hi) {
		t.Errorf("ExpiresAt %v not about 12h ahead", c.ExpiresAt)
	}
	// The second host in the region is served from the cache; a host in another region gets a
	// token signed for that region.
	mustCredentials(t, p, "210987654321.dkr.ecr.us-west-2.amazonaws.com")
	mustCredentials(t, p, "123456789012.dkr-ecr.eu-central-1.on.aws")
	if got := srv.Regions(); len(got) != 2 || got["us-west-2"] != 1 || got["eu-central-1"] != 1 {
		t.Errorf("requests per signed region: %v", got)
	}
}

func TestSDKHalfLifetimeAndExpiry(t *testing.T) {
	clock := newFakeClock()
	srv := ecrtest.NewServer(ecrtest.Config{Password: testPassword, Lifetime: 4 * time.Hour, Now: clock.Now})
	defer srv.Close()
	p := NewProvider(Options{Client: sdkConfig(t, srv, 1), Now: clock.Now})

	first := mustCredentials(t, p, testHost)
	if !first.ExpiresAt.Equal(clock.Now().Add(4 * time.Hour)) {
		t.Errorf("ExpiresAt %v, want %v", first.ExpiresAt, clock.Now().Add(4*time.Hour))
	}
	clock.Advance(2*time.Hour - time.Second)
	mustCredentials(t, p, testHost)
	if srv.Calls() != 1 {
		t.Fatalf("calls = %d before half-life", srv.Calls())
	}
	clock.Advance(time.Second)
	srv.SetCredentials("AWS", "rotated-password")
	if c := mustCredentials(t, p, testHost); c.Password != "rotated-password" || srv.Calls() != 2 {
		t.Fatalf("at half-life: calls = %d", srv.Calls())
	}
	clock.Advance(5 * time.Hour) // expired
	mustCredentials(t, p, testHost)
	if srv.Calls() != 3 {
		t.Fatalf("after expiry: calls = %d", srv.Calls())
	}
}

func TestSDKConcurrentCallersOneCall(t *testing.T) {
	srv := ecrtest.NewServer(ecrtest.Config{Password: testPassword})
	defer srv.Close()
	p := NewProvider(Options{Client: sdkConfig(t, srv, 1)})

	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.Credentials(context.Background(), testHost)
			if err == nil && c.Password != testPassword {
				err = errors.New("wrong password")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if srv.Calls() != 1 {
		t.Errorf("50 callers caused %d API calls", srv.Calls())
	}
}

func TestSDKFailures(t *testing.T) {
	tests := []struct {
		mode     ecrtest.Mode
		code     string // Error.Code
		contains string
		is       error
	}{
		{mode: ecrtest.AccessDenied, code: "AccessDeniedException", contains: "ecr GetAuthorizationToken in us-west-2: AccessDeniedException: User: arn:aws:sts::"},
		{mode: ecrtest.Throttling, code: "ThrottlingException", contains: "ecr GetAuthorizationToken in us-west-2: ThrottlingException: Rate exceeded"},
		{mode: ecrtest.ServerError, code: "ServerException", contains: "ecr GetAuthorizationToken in us-west-2: ServerException: Internal service error"},
		{mode: ecrtest.ProxyError, code: "HTTP 500", contains: "ecr GetAuthorizationToken in us-west-2: HTTP 500: "},
		{mode: ecrtest.EmptyToken, is: ErrNoToken, contains: "ecr GetAuthorizationToken in us-west-2: response has no authorization token"},
		{mode: ecrtest.MalformedToken, is: ErrMalformedToken, contains: "ecr GetAuthorizationToken in us-west-2: authorization token is not base64"},
		{mode: ecrtest.NoExpiry, is: ErrNoExpiry, contains: "ecr GetAuthorizationToken in us-west-2: response has no expiry"},
		{mode: ecrtest.Hang, is: context.DeadlineExceeded, contains: "ecr GetAuthorizationToken in us-west-2: no answer within 1s ("},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			srv := ecrtest.NewServer(ecrtest.Config{Password: testPassword, Mode: tt.mode})
			defer srv.Close()
			timeout := 30 * time.Second
			if tt.mode == ecrtest.Hang {
				timeout = time.Second
			}
			p := NewProvider(Options{Client: sdkConfig(t, srv, 1), Timeout: timeout})
			_, err := p.Credentials(context.Background(), testHost)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			if !strings.Contains(msg, tt.contains) {
				t.Errorf("error %q lacks %q", msg, tt.contains)
			}
			if strings.Contains(msg, testPassword) || strings.Contains(msg, base64.StdEncoding.EncodeToString([]byte("AWS:"+testPassword))) {
				t.Errorf("error shows the token: %s", msg)
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code {
				t.Errorf("error %#v: want an *Error with code %q", err, tt.code)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error is not %v", tt.is)
			}
			if strings.HasSuffix(tt.code, "Exception") {
				var apiErr smithy.APIError
				if !errors.As(err, &apiErr) || apiErr.ErrorCode() != tt.code {
					t.Errorf("no smithy.APIError %s in the chain", tt.code)
				}
			}
			if srv.Calls() != 1 && tt.mode != ecrtest.Hang {
				t.Errorf("calls = %d with retries off", srv.Calls())
			}
		})
	}
}

// Nothing listens: the error says so, without a code.
func TestSDKConnectionRefused(t *testing.T) {
	srv := ecrtest.NewServer(ecrtest.Config{})
	cfg := sdkConfig(t, srv, 1)
	srv.Close()
	p := NewProvider(Options{Client: cfg})
	_, err := p.Credentials(context.Background(), testHost)
	var e *Error
	if !errors.As(err, &e) || e.Code != "" || !strings.Contains(err.Error(), "ecr GetAuthorizationToken in us-west-2: ") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("err = %v", err)
	}
}

// With its default retryer (3 attempts) the SDK rides out a throttle by itself: one fetch,
// two requests.
func TestSDKRetriesThrottling(t *testing.T) {
	srv := ecrtest.NewServer(ecrtest.Config{Password: testPassword})
	defer srv.Close()
	srv.FailNext(ecrtest.Throttling, 1)
	p := NewProvider(Options{Client: sdkConfig(t, srv, 0)})
	c := mustCredentials(t, p, testHost)
	if c.Password != testPassword || srv.Calls() != 2 || p.Stats().Fetches != 1 {
		t.Errorf("calls = %d, stats %+v", srv.Calls(), p.Stats())
	}
}

// AccessDenied is not retried by the SDK.
func TestSDKNoRetryOnAccessDenied(t *testing.T) {
	srv := ecrtest.NewServer(ecrtest.Config{Mode: ecrtest.AccessDenied})
	defer srv.Close()
	p := NewProvider(Options{Client: sdkConfig(t, srv, 0)})
	if _, err := p.Credentials(context.Background(), testHost); err == nil {
		t.Fatal("no error")
	}
	if srv.Calls() != 1 {
		t.Errorf("calls = %d", srv.Calls())
	}
}

// Per-region endpoints win over BaseEndpoint; an override also wins over FIPS and dual-stack,
// which the SDK would otherwise refuse to combine with it.
func TestSDKRegionEndpoints(t *testing.T) {
	west := ecrtest.NewServer(ecrtest.Config{Password: "west"})
	defer west.Close()
	central := ecrtest.NewServer(ecrtest.Config{Password: "central"})
	defer central.Close()
	cfg := sdkConfig(t, west, 1)
	cfg.Endpoints = map[string]string{"eu-central-1": central.URL}
	cfg.FIPS, cfg.DualStack = true, true
	p := NewProvider(Options{Client: cfg})
	if c := mustCredentials(t, p, "123456789012.dkr.ecr.eu-central-1.amazonaws.com"); c.Password != "central" {
		t.Errorf("eu-central-1 went to %s", c.Password)
	}
	if c := mustCredentials(t, p, testHost); c.Password != "west" {
		t.Errorf("us-west-2 went to %s", c.Password)
	}
}

// A shared config file that does not parse is reported, for the region, and retried later.
func TestSDKBadSharedConfig(t *testing.T) {
	srv := ecrtest.NewServer(ecrtest.Config{})
	defer srv.Close()
	cfg := sdkConfig(t, srv, 1)
	cfg.Profile = "missing"
	p := NewProvider(Options{Client: cfg})
	_, err := p.Credentials(context.Background(), testHost)
	if err == nil || !strings.Contains(err.Error(), "ecr GetAuthorizationToken in us-west-2: loading AWS configuration for us-west-2") {
		t.Fatalf("err = %v", err)
	}
	if srv.Calls() != 0 || p.Stats().Errors != 1 {
		t.Errorf("calls %d, stats %+v", srv.Calls(), p.Stats())
	}
}

// A plugin started by containerd has no environment and no HOME: credentials come from the
// files its configuration names.
func TestSDKSharedFiles(t *testing.T) {
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR"} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true") // never fall through to a real IMDS
	t.Setenv("HOME", t.TempDir())

	dir := t.TempDir()
	cfgFile, credFile := filepath.Join(dir, "config"), filepath.Join(dir, "credentials")
	writeFile := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(credFile, "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = x\n\n[node]\naws_access_key_id = AKIDNODE\naws_secret_access_key = y\n")
	writeFile(cfgFile, "[default]\nregion = ap-south-1\n\n[profile node]\nregion = ap-south-1\n")

	for _, tt := range []struct{ profile, key string }{{"", "AKIDDEFAULT"}, {"node", "AKIDNODE"}} {
		srv := ecrtest.NewServer(ecrtest.Config{})
		p := NewProvider(Options{Client: ClientConfig{
			BaseEndpoint:           srv.URL,
			SharedConfigFiles:      []string{cfgFile},
			SharedCredentialsFiles: []string{credFile},
			Profile:                tt.profile,
			RetryMaxAttempts:       1,
		}})
		mustCredentials(t, p, testHost)
		// The key from the file, and the region from the host, not from the file.
		if keys, regions := srv.AccessKeys(), srv.Regions(); keys[tt.key] != 1 || regions["us-west-2"] != 1 {
			t.Errorf("profile %q: keys %v, regions %v", tt.profile, keys, regions)
		}
		srv.Close()
	}

	// A named file that does not exist is skipped by the SDK; with nothing else in the chain
	// the call fails before any request, naming the region.
	srv := ecrtest.NewServer(ecrtest.Config{})
	defer srv.Close()
	p := NewProvider(Options{Client: ClientConfig{
		BaseEndpoint:           srv.URL,
		SharedConfigFiles:      []string{filepath.Join(dir, "missing-config")},
		SharedCredentialsFiles: []string{filepath.Join(dir, "missing-credentials")},
		RetryMaxAttempts:       1,
	}})
	_, err := p.Credentials(context.Background(), testHost)
	t.Logf("no credentials: %v", err)
	if err == nil || !strings.Contains(err.Error(), "ecr GetAuthorizationToken in us-west-2: ") || srv.Calls() != 0 {
		t.Errorf("no credentials: err %v, calls %d", err, srv.Calls())
	}
}

package ecr

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/smithy-go"
	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"
)

// DefaultTimeout bounds one GetAuthorizationToken call, the SDK's own retries included.
const DefaultTimeout = 30 * time.Second

// staleMargin is how long before expiry an old token stops being a fallback for a failed
// refresh: a pull started with it must still be able to finish.
const staleMargin = time.Minute

// Errors about the content of a GetAuthorizationToken answer; they never carry the token.
var (
	ErrNotECR         = errors.New("not an ECR registry")
	ErrNoToken        = errors.New("response has no authorization token")
	ErrMalformedToken = errors.New("authorization token is not base64 of user:password")
	ErrNoExpiry       = errors.New("response has no expiry for the authorization token")
)

// Credentials are a registry username and password, valid until ExpiresAt. String and GoString
// never show the password, so a Credentials can be logged by mistake without leaking it.
type Credentials struct {
	Username  string
	Password  string
	ExpiresAt time.Time
}

// String shows the username and expiry, never the password.
func (c Credentials) String() string {
	return fmt.Sprintf("%s:<redacted> (expires %s)", c.Username, c.ExpiresAt.UTC().Format(time.RFC3339))
}

// GoString is String, for %#v.
func (c Credentials) GoString() string { return c.String() }

// Error is a failed GetAuthorizationToken: the region, the AWS error code when there is one
// (AccessDeniedException, ThrottlingException...; "HTTP <status>" when the answer was not an AWS
// error), and what went wrong. It unwraps to the SDK's error, so errors.As finds a
// smithy.APIError.
type Error struct {
	Region string
	Code   string
	Err    error
	msg    string
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("ecr GetAuthorizationToken in %s: %s", e.Region, e.msg)
	}
	return fmt.Sprintf("ecr GetAuthorizationToken in %s: %s: %s", e.Region, e.Code, e.msg)
}

func (e *Error) Unwrap() error { return e.Err }

// newError describes err, an error from API.GetAuthorizationToken or from reading its answer.
func newError(region string, err error) *Error {
	e := &Error{Region: region, Err: err, msg: err.Error()}
	var apiErr smithy.APIError
	var respErr *awshttp.ResponseError
	switch {
	case errors.As(err, &apiErr):
		e.Code, e.msg = apiErr.ErrorCode(), apiErr.ErrorMessage()
	case errors.As(err, &respErr):
		// No status means no answer: the connection failed or the time ran out.
		if status := respErr.HTTPStatusCode(); status != 0 {
			e.Code = fmt.Sprintf("HTTP %d", status)
		}
		e.msg = respErr.Err.Error()
	}
	return e
}

// Stats counts what a Provider did since it was made.
type Stats struct {
	Fetches uint64 // GetAuthorizationToken calls (each may include SDK retries)
	Errors  uint64 // failed fetches, including client set-up and invalid answers
	Hits    uint64 // Credentials calls answered from the cache
}

// Options configure a Provider. Zero fields take defaults.
type Options struct {
	// Resolver maps a registry host to the region whose token it needs.
	Resolver Resolver
	// NewClient makes the API client of a region; default NewClientFactory(Client).
	NewClient ClientFactory
	// Client configures the default NewClient.
	Client ClientConfig
	// Timeout bounds each fetch; default DefaultTimeout.
	Timeout time.Duration
	Now     func() time.Time
}

// Provider hands out ECR credentials for registry hosts, one token per region, cached until
// half of its remaining lifetime at fetch time has passed (the rule of kubelet's provider).
// Concurrent callers that need the same region share one API call. Safe for concurrent use.
type Provider struct {
	resolver  Resolver
	newClient ClientFactory
	timeout   time.Duration
	now       func() time.Time

	mu      sync.Mutex
	clients map[string]API
	cache   map[string]entry

	flights singleflight.Group
	fetches atomic.Uint64
	errors  atomic.Uint64
	hits    atomic.Uint64
}

type entry struct {
	creds     Credentials
	refreshAt time.Time // fetch time + half of the lifetime left then
}

// usable reports whether e has not expired at now.
func (e entry) usable(now time.Time) bool { return now.Before(e.creds.ExpiresAt) }

// fresh reports whether e should be handed out without fetching.
func (e entry) fresh(now time.Time) bool { return now.Before(e.refreshAt) && e.usable(now) }

// NewProvider returns a Provider configured by o.
func NewProvider(o Options) *Provider {
	p := &Provider{
		resolver:  Resolver{Declared: maps.Clone(o.Resolver.Declared)}, // the caller keeps its map
		newClient: o.NewClient,
		timeout:   o.Timeout,
		now:       o.Now,
		clients:   map[string]API{},
		cache:     map[string]entry{},
	}
	if p.newClient == nil {
		p.newClient = NewClientFactory(o.Client)
	}
	if p.timeout <= 0 {
		p.timeout = DefaultTimeout
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p
}

// Credentials returns credentials for the ECR registry host (with an optional :port): from the
// cache while fresh, else from one GetAuthorizationToken call in the host's region shared by
// every concurrent caller. If that call fails while the older token has more than a minute
// left, the older token is returned (the failure is logged and counted). A host that is neither
// declared nor an ECR host gives ErrNotECR. Errors name the region and the AWS error code (see
// Error) and never contain the token.
func (p *Provider) Credentials(ctx context.Context, host string) (Credentials, error) {
	region, ok := p.resolver.Resolve(host)
	if !ok {
		return Credentials{}, fmt.Errorf("ecr credentials for %s: %w", host, ErrNotECR)
	}
	return p.RegionCredentials(ctx, region)
}

// RegionCredentials is Credentials for a region rather than a host.
func (p *Provider) RegionCredentials(ctx context.Context, region string) (Credentials, error) {
	if region == "" {
		return Credentials{}, errors.New("ecr credentials: no region")
	}
	if e, ok := p.lookup(region); ok && e.fresh(p.now()) {
		p.hits.Add(1)
		return e.creds, nil
	}
	// The flight runs on its own: a caller that gives up does not cancel it for the others,
	// and its result is cached for whoever asks next. It keeps ctx's values (loggers, traces).
	ch := p.flights.DoChan(region, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
		defer cancel()
		return p.fetch(fctx, region)
	})
	select {
	case <-ctx.Done():
		return Credentials{}, fmt.Errorf("waiting for the ECR token of %s: %w", region, context.Cause(ctx))
	case res := <-ch:
		if res.Err == nil {
			return res.Val.(Credentials), nil
		}
		if e, ok := p.lookup(region); ok && e.usable(p.now().Add(staleMargin)) {
			log.G(ctx).WithError(res.Err).WithFields(logrus.Fields{"region": region, "expires": e.creds.ExpiresAt}).
				Warn("refreshing the ECR token failed; using the current one until it expires")
			return e.creds, nil
		}
		return Credentials{}, res.Err
	}
}

// Peek returns the cached, unexpired credentials for host without calling the API, e.g. to
// see when they expire.
func (p *Provider) Peek(host string) (Credentials, bool) {
	region, ok := p.resolver.Resolve(host)
	if !ok {
		return Credentials{}, false
	}
	e, ok := p.lookup(region)
	if !ok || !e.usable(p.now()) {
		return Credentials{}, false
	}
	return e.creds, true
}

// Forget drops the cached token for host's region, so that the next call fetches a new one
// (after the registry refused the current token, say).
func (p *Provider) Forget(host string) {
	region, ok := p.resolver.Resolve(host)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.cache, region)
}

// Stats returns the counters.
func (p *Provider) Stats() Stats {
	return Stats{Fetches: p.fetches.Load(), Errors: p.errors.Load(), Hits: p.hits.Load()}
}

func (p *Provider) lookup(region string) (entry, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.cache[region]
	return e, ok
}

// fetch runs inside the region's flight.
func (p *Provider) fetch(ctx context.Context, region string) (Credentials, error) {
	// A flight that ended just before this one started may have left a fresh token.
	if e, ok := p.lookup(region); ok && e.fresh(p.now()) {
		p.hits.Add(1)
		return e.creds, nil
	}
	client, err := p.client(ctx, region)
	if err != nil {
		p.errors.Add(1)
		return Credentials{}, &Error{Region: region, Err: err, msg: err.Error()}
	}
	p.fetches.Add(1)
	out, err := client.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err == nil {
		var creds Credentials
		if creds, err = decode(out); err == nil {
			p.store(ctx, region, creds)
			return creds, nil
		}
	}
	p.errors.Add(1)
	e := newError(region, err)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		e.msg = fmt.Sprintf("no answer within %s (%s)", p.timeout, e.msg)
	}
	return Credentials{}, e
}

// store caches creds until half of the lifetime they have left now.
func (p *Provider) store(ctx context.Context, region string, creds Credentials) {
	now := p.now()
	left := creds.ExpiresAt.Sub(now)
	if left <= 0 {
		log.G(ctx).WithFields(logrus.Fields{"region": region, "expires": creds.ExpiresAt}).
			Warn("ECR token expired on arrival (is the clock right?); not caching it")
		return
	}
	p.mu.Lock()
	p.cache[region] = entry{creds: creds, refreshAt: now.Add(left / 2)}
	p.mu.Unlock()
	log.G(ctx).WithFields(logrus.Fields{"region": region, "expires": creds.ExpiresAt}).Debug("fetched ECR token")
}

// client returns the cached client of region, making it the first time.
func (p *Provider) client(ctx context.Context, region string) (API, error) {
	p.mu.Lock()
	c, ok := p.clients[region]
	p.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := p.newClient(ctx, region) // within the region's flight: never twice at once
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clients[region] = c
	return c, nil
}

// decode checks a GetAuthorizationToken answer and takes the credentials out of it. Its
// errors never include the token.
func decode(out *ecr.GetAuthorizationTokenOutput) (Credentials, error) {
	if out == nil || len(out.AuthorizationData) == 0 {
		return Credentials{}, ErrNoToken
	}
	d := out.AuthorizationData[0]
	if d.AuthorizationToken == nil || *d.AuthorizationToken == "" {
		return Credentials{}, ErrNoToken
	}
	raw, err := base64.StdEncoding.DecodeString(*d.AuthorizationToken)
	if err != nil {
		return Credentials{}, ErrMalformedToken
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" || pass == "" {
		return Credentials{}, ErrMalformedToken
	}
	if d.ExpiresAt == nil || d.ExpiresAt.IsZero() {
		return Credentials{}, ErrNoExpiry
	}
	return Credentials{Username: user, Password: pass, ExpiresAt: *d.ExpiresAt}, nil
}

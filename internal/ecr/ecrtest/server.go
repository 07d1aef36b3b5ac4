// Package ecrtest is a loopback stand-in for the one Amazon ECR API call sandbox-guard makes,
// GetAuthorizationToken, speaking AWS JSON 1.1 well enough for the real aws-sdk-go-v2 client
// (pointed at it with BaseEndpoint and any static credentials). It counts calls, records the
// region each request was signed for, and can fail the ways the real service does.
//
// It does not verify SigV4 signatures; it only requires an Authorization header, as the real
// service does before anything else, and records the access key ID and region it names.
//
// Besides the API it answers two control requests, for harnesses that run it as a process
// (cmd/fake-ecr): GET /_fake/calls returns {"calls":N,"regions":{"us-west-2":N}}, and
// POST /_fake/mode with a mode name as the body (and optionally ?next=N to fail only the next N
// calls) changes how it answers.
package ecrtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Target is the X-Amz-Target of GetAuthorizationToken.
const Target = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"

// Mode says how the fake answers GetAuthorizationToken.
type Mode string

// The modes. Each failure is what the real service (or something in front of it) sends.
const (
	OK             Mode = "ok"              // 200 with a token
	AccessDenied   Mode = "access-denied"   // 400 AccessDeniedException
	Throttling     Mode = "throttling"      // 400 ThrottlingException (the SDK retries it)
	EmptyToken     Mode = "empty-token"     // 200 with "authorizationToken":""
	MalformedToken Mode = "malformed-token" // 200 with base64 that has no "user:" part
	NoExpiry       Mode = "no-expiry"       // 200 without expiresAt
	ServerError    Mode = "server-error"    // 500 ServerException (the SDK retries it)
	ProxyError     Mode = "proxy-error"     // 500 with an HTML body, as from a proxy
	Hang           Mode = "hang"            // never answers, until the client gives up or Close
)

// Modes lists every mode.
func Modes() []Mode {
	return []Mode{OK, AccessDenied, Throttling, EmptyToken, MalformedToken, NoExpiry, ServerError, ProxyError, Hang}
}

// ParseMode returns the mode called s.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes() {
		if string(m) == strings.TrimSpace(s) {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown mode %q", s)
}

// Defaults used for zero Config fields.
const (
	DefaultUsername = "AWS"
	DefaultPassword = "fake-ecr-password"
	DefaultLifetime = 12 * time.Hour
	DefaultAccount  = "123456789012"
)

// Config sets up a Fake. Zero fields take the defaults above (and mode OK, time.Now).
type Config struct {
	Username string
	Password string
	Lifetime time.Duration // from the time of each call to the token's expiresAt
	Account  string        // used in proxyEndpoint
	Mode     Mode
	Now      func() time.Time
}

// Fake is the ECR API as an http.Handler. Safe for concurrent use.
type Fake struct {
	now     func() time.Time
	account string

	mu       sync.Mutex
	username string
	password string
	lifetime time.Duration
	mode     Mode
	next     []Mode
	calls    int
	regions  map[string]int
	keys     map[string]int

	released    chan struct{}
	releaseOnce sync.Once
}

// New returns a Fake answering as cfg says.
func New(cfg Config) *Fake {
	f := &Fake{
		now:      cfg.Now,
		account:  cfg.Account,
		username: cfg.Username,
		password: cfg.Password,
		lifetime: cfg.Lifetime,
		mode:     cfg.Mode,
		regions:  map[string]int{},
		keys:     map[string]int{},
		released: make(chan struct{}),
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.account == "" {
		f.account = DefaultAccount
	}
	if f.username == "" {
		f.username = DefaultUsername
	}
	if f.password == "" {
		f.password = DefaultPassword
	}
	if f.lifetime == 0 {
		f.lifetime = DefaultLifetime
	}
	if f.mode == "" {
		f.mode = OK
	}
	return f
}

// SetMode makes every later call answer as m (after any FailNext calls are used up).
func (f *Fake) SetMode(m Mode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mode = m
}

// FailNext makes the next n calls answer as m; later calls go back to the mode set before.
func (f *Fake) FailNext(m Mode, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.next = append(f.next, m)
	}
}

// SetCredentials changes the username and password of later tokens.
func (f *Fake) SetCredentials(username, password string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.username, f.password = username, password
}

// SetLifetime changes the lifetime of later tokens.
func (f *Fake) SetLifetime(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lifetime = d
}

// Calls is the number of GetAuthorizationToken requests received, failed ones included.
func (f *Fake) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Regions returns how many requests were signed for each region (the credential scope of the
// Authorization header; "" when it had none).
func (f *Fake) Regions() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.regions))
	for k, v := range f.regions {
		out[k] = v
	}
	return out
}

// AccessKeys returns how many requests were signed with each access key ID (from the
// Authorization header; "" when it had none), to check which credentials a client used.
func (f *Fake) AccessKeys() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.keys))
	for k, v := range f.keys {
		out[k] = v
	}
	return out
}

// Release makes every hanging request (mode Hang) return, now and later. Close calls it.
func (f *Fake) Release() { f.releaseOnce.Do(func() { close(f.released) }) }

// ServeHTTP answers GetAuthorizationToken and the control requests.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_fake/") {
		f.control(w, r)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		writeError(w, http.StatusNotFound, "UnknownOperationException", "only POST / is served")
		return
	}
	if r.Header.Get("Authorization") == "" {
		writeError(w, http.StatusBadRequest, "MissingAuthenticationTokenException", "Missing Authentication Token")
		return
	}
	if t := r.Header.Get("X-Amz-Target"); t != Target {
		writeError(w, http.StatusBadRequest, "UnknownOperationException", "unknown operation "+t)
		return
	}
	key, region := credentialScope(r.Header.Get("Authorization"))

	f.mu.Lock()
	f.calls++
	f.regions[region]++
	f.keys[key]++
	mode := f.mode
	if len(f.next) > 0 {
		mode, f.next = f.next[0], f.next[1:]
	}
	user, pass, lifetime := f.username, f.password, f.lifetime
	n := f.calls
	f.mu.Unlock()

	w.Header().Set("X-Amzn-Requestid", fmt.Sprintf("fake-ecr-%d", n))
	switch mode {
	case AccessDenied:
		writeError(w, http.StatusBadRequest, "AccessDeniedException",
			"User: arn:aws:sts::"+f.account+":assumed-role/node/i-0123456789abcdef0 is not authorized to perform: ecr:GetAuthorizationToken on resource: * because no identity-based policy allows the ecr:GetAuthorizationToken action")
		return
	case Throttling:
		writeError(w, http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
		return
	case ServerError:
		writeError(w, http.StatusInternalServerError, "ServerException", "Internal service error")
		return
	case ProxyError:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "<html><body><h1>500 Internal Server Error</h1></body></html>\n")
		return
	case Hang:
		select {
		case <-r.Context().Done():
		case <-f.released:
		}
		return
	}

	token := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	switch mode {
	case EmptyToken:
		token = ""
	case MalformedToken:
		token = base64.StdEncoding.EncodeToString([]byte(user + pass)) // no ':'
	}
	if region == "" {
		region = "us-east-1"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `{"authorizationData":[{"authorizationToken":%q`, token)
	if mode != NoExpiry {
		fmt.Fprintf(&b, `,"expiresAt":%s`, epochSeconds(f.now().Add(lifetime)))
	}
	fmt.Fprintf(&b, `,"proxyEndpoint":%q}]}`, "https://"+f.account+".dkr.ecr."+region+".amazonaws.com")
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_, _ = io.WriteString(w, b.String())
}

func (f *Fake) control(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_fake/calls" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"calls": f.Calls(), "regions": f.Regions()})
	case r.URL.Path == "/_fake/mode" && (r.Method == http.MethodPost || r.Method == http.MethodPut):
		body, err := io.ReadAll(io.LimitReader(r.Body, 1024))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m, err := ParseMode(string(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if next := r.URL.Query().Get("next"); next != "" {
			n, err := strconv.Atoi(next)
			if err != nil || n < 0 {
				http.Error(w, "next must be a count", http.StatusBadRequest)
				return
			}
			f.FailNext(m, n)
		} else {
			f.SetMode(m)
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

// writeError answers as AWS JSON 1.1 does: the error code in __type, the text in message.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

// credentialScope returns the access key ID and the region of a SigV4 Authorization header:
// "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-west-2/ecr/aws4_request, ...".
func credentialScope(auth string) (key, region string) {
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return "", ""
	}
	cred, _, _ = strings.Cut(cred, ",")
	parts := strings.Split(cred, "/")
	if len(parts) < 5 {
		return "", ""
	}
	return parts[0], parts[2]
}

// epochSeconds formats t the way the real service does, in the Java notation of a double:
// 1.712345678123E9.
func epochSeconds(t time.Time) string {
	s := strconv.FormatFloat(float64(t.UnixMilli())/1000, 'E', -1, 64) // 1.712345678123E+09
	mant, exp, _ := strings.Cut(s, "E")
	e, _ := strconv.Atoi(exp)
	return mant + "E" + strconv.Itoa(e)
}

// Server is a Fake listening on a loopback port.
type Server struct {
	*Fake
	URL string // http://127.0.0.1:port, for BaseEndpoint
	srv *httptest.Server
}

// NewServer starts a Fake on a loopback port. Close it when done.
func NewServer(cfg Config) *Server {
	f := New(cfg)
	srv := httptest.NewServer(f)
	return &Server{Fake: f, URL: srv.URL, srv: srv}
}

// Close releases hanging requests and stops the server.
func (s *Server) Close() {
	s.Release()
	s.srv.Close()
}

package ecrtest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

const signed = "AWS4-HMAC-SHA256 Credential=AKID/20250601/eu-west-1/ecr/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=00"

func post(t *testing.T, url, target, auth string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(body, &out)
	return resp.StatusCode, out
}

func TestFakeToken(t *testing.T) {
	now := time.Date(2025, 6, 1, 0, 0, 0, 123e6, time.UTC)
	srv := NewServer(Config{Username: "AWS", Password: "pw", Lifetime: time.Hour, Now: func() time.Time { return now }})
	defer srv.Close()

	status, out := post(t, srv.URL+"/", Target, signed)
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, out)
	}
	data := out["authorizationData"].([]any)[0].(map[string]any)
	if tok, _ := base64.StdEncoding.DecodeString(data["authorizationToken"].(string)); string(tok) != "AWS:pw" {
		t.Errorf("token decodes to %q", tok)
	}
	if exp := data["expiresAt"].(float64); exp != float64(now.Add(time.Hour).UnixMilli())/1000 {
		t.Errorf("expiresAt %v", exp)
	}
	if pe := data["proxyEndpoint"]; pe != "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com" {
		t.Errorf("proxyEndpoint %v", pe)
	}
	if srv.Calls() != 1 || srv.Regions()["eu-west-1"] != 1 || srv.AccessKeys()["AKID"] != 1 {
		t.Errorf("calls %d, regions %v, keys %v", srv.Calls(), srv.Regions(), srv.AccessKeys())
	}
}

func TestFakeRefusesOddRequests(t *testing.T) {
	srv := NewServer(Config{})
	defer srv.Close()
	if status, out := post(t, srv.URL+"/", Target, ""); status != http.StatusBadRequest || out["__type"] != "MissingAuthenticationTokenException" {
		t.Errorf("unsigned: %d %v", status, out)
	}
	if status, out := post(t, srv.URL+"/", "AmazonEC2ContainerRegistry_V20150921.DescribeImages", signed); status != http.StatusBadRequest || out["__type"] != "UnknownOperationException" {
		t.Errorf("other operation: %d %v", status, out)
	}
	if status, _ := post(t, srv.URL+"/elsewhere", Target, signed); status != http.StatusNotFound {
		t.Errorf("other path: %d", status)
	}
	if srv.Calls() != 0 {
		t.Errorf("calls %d", srv.Calls())
	}
}

func TestFakeModes(t *testing.T) {
	srv := NewServer(Config{})
	defer srv.Close()
	srv.SetMode(AccessDenied)
	srv.FailNext(Throttling, 1)
	if status, out := post(t, srv.URL, Target, signed); status != 400 || out["__type"] != "ThrottlingException" {
		t.Errorf("FailNext: %d %v", status, out)
	}
	if status, out := post(t, srv.URL, Target, signed); status != 400 || out["__type"] != "AccessDeniedException" {
		t.Errorf("SetMode: %d %v", status, out)
	}
	srv.SetMode(ServerError)
	if status, out := post(t, srv.URL, Target, signed); status != 500 || out["__type"] != "ServerException" {
		t.Errorf("server error: %d %v", status, out)
	}
	srv.SetMode(NoExpiry)
	if _, out := post(t, srv.URL, Target, signed); out["authorizationData"].([]any)[0].(map[string]any)["expiresAt"] != nil {
		t.Errorf("no-expiry: %v", out)
	}
	srv.SetMode(EmptyToken)
	if _, out := post(t, srv.URL, Target, signed); out["authorizationData"].([]any)[0].(map[string]any)["authorizationToken"] != "" {
		t.Errorf("empty-token: %v", out)
	}
	for _, m := range Modes() {
		if got, err := ParseMode(string(m)); err != nil || got != m {
			t.Errorf("ParseMode(%s) = %v, %v", m, got, err)
		}
	}
	if _, err := ParseMode("nope"); err == nil {
		t.Error("ParseMode(nope)")
	}
}

func TestFakeHangEndsWithClient(t *testing.T) {
	srv := NewServer(Config{Mode: Hang})
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader("{}"))
	req.Header.Set("X-Amz-Target", Target)
	req.Header.Set("Authorization", signed)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("a hanging server answered")
	}
}

// Close returns even while a client keeps waiting on a hanging request.
func TestFakeCloseReleasesHang(t *testing.T) {
	srv := NewServer(Config{Mode: Hang})
	started := make(chan struct{})
	go func() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{}"))
		req.Header.Set("X-Amz-Target", Target)
		req.Header.Set("Authorization", signed)
		close(started)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	testutil.WaitFor(t, "the API call to start", func() bool { return srv.Calls() > 0 })
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
}

func TestFakeControl(t *testing.T) {
	srv := NewServer(Config{})
	defer srv.Close()
	do := func(method, path, body string) int {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := do(http.MethodPost, "/_fake/mode", "access-denied"); s != http.StatusNoContent {
		t.Fatalf("set mode: %d", s)
	}
	if s := do(http.MethodPost, "/_fake/mode?next=1", "throttling"); s != http.StatusNoContent {
		t.Fatalf("fail next: %d", s)
	}
	if s := do(http.MethodPost, "/_fake/mode", "bogus"); s != http.StatusBadRequest {
		t.Errorf("bad mode: %d", s)
	}
	if _, out := post(t, srv.URL, Target, signed); out["__type"] != "ThrottlingException" {
		t.Errorf("first: %v", out)
	}
	if _, out := post(t, srv.URL, Target, signed); out["__type"] != "AccessDeniedException" {
		t.Errorf("second: %v", out)
	}
	resp, err := http.Get(srv.URL + "/_fake/calls")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var calls struct {
		Calls   int            `json:"calls"`
		Regions map[string]int `json:"regions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&calls); err != nil || calls.Calls != 2 || calls.Regions["eu-west-1"] != 2 {
		t.Errorf("calls: %+v, %v", calls, err)
	}
}

func TestEpochSeconds(t *testing.T) {
	for _, tt := range []struct {
		t    time.Time
		want string
	}{
		{time.UnixMilli(1712345678123), "1.712345678123E9"},
		{time.Unix(1712345678, 0), "1.712345678E9"},
		{time.Unix(946684800, 0), "9.466848E8"},
	} {
		if got := epochSeconds(tt.t); got != tt.want {
			t.Errorf("epochSeconds(%v) = %s, want %s", tt.t, got, tt.want)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/ecr/ecrtest"
)

func TestRun(t *testing.T) {
	addrFile := filepath.Join(t.TempDir(), "addr")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		errc <- run(ctx, []string{"--listen", "127.0.0.1:0", "--username", "AWS", "--password", "pw-from-flag",
			"--lifetime", "1h", "--addr-file", addrFile}, &stderr, func(addr string) { ready <- addr })
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-errc:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not listening")
	}
	if b, err := os.ReadFile(addrFile); err != nil || string(b) != addr {
		t.Fatalf("addr file %q, %v; want %q", b, err, addr)
	}

	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader("{}"))
	req.Header.Set("X-Amz-Target", ecrtest.Target)
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20250601/us-west-2/ecr/aws4_request, Signature=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out struct {
		AuthorizationData []struct {
			AuthorizationToken string  `json:"authorizationToken"`
			ExpiresAt          float64 `json:"expiresAt"`
		} `json:"authorizationData"`
	}
	if err := json.Unmarshal(body, &out); err != nil || len(out.AuthorizationData) != 1 {
		t.Fatalf("answer %s: %v", body, err)
	}
	if tok, _ := base64.StdEncoding.DecodeString(out.AuthorizationData[0].AuthorizationToken); string(tok) != "AWS:pw-from-flag" {
		t.Errorf("token %q", tok)
	}
	if exp := time.Unix(int64(out.AuthorizationData[0].ExpiresAt), 0); time.Until(exp) < 59*time.Minute || time.Until(exp) > 61*time.Minute {
		t.Errorf("expires %v", exp)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run does not stop")
	}
	if !strings.Contains(stderr.String(), "listening on "+addr) {
		t.Errorf("stderr: %s", stderr.String())
	}
}

func TestRunBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--mode", "bogus"},
		{"--lifetime", "0s"},
		{"--listen", "256.0.0.1:0"},
		{"extra"},
		{"--nope"},
		{"--addr-file", filepath.Join(t.TempDir(), "missing-dir", "addr")},
	} {
		if err := run(context.Background(), args, io.Discard, nil); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}

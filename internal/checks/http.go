package checks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
)

// HTTPProber passes when URL answers 2xx and, when Body is set, the body matches it (e.g.
// kube-proxy's metrics showing a non-zero kubeproxy_sync_proxy_rules_last_timestamp_seconds).
type HTTPProber struct {
	URL    string
	Body   *regexp.Regexp
	Client *http.Client // http.DefaultClient when nil; the probe's context bounds each request
}

// Probe makes one GET request.
func (p HTTPProber) Probe(ctx context.Context) Outcome {
	client := p.Client
	if client == nil {
		client = http.DefaultClient
	}
	shown := redact(p.URL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return Outcome{Detail: fmt.Sprintf("GET %s: %v", shown, unwrapURLError(err)), Err: true}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Outcome{Detail: fmt.Sprintf("GET %s: %v", shown, unwrapURLError(err))}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return Outcome{Detail: fmt.Sprintf("GET %s answered %s", shown, resp.Status)}
	}
	if p.Body == nil {
		return Outcome{OK: true, Detail: fmt.Sprintf("GET %s answered %s", shown, resp.Status)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return Outcome{Detail: fmt.Sprintf("GET %s: reading body: %v", shown, err)}
	}
	if !p.Body.Match(body) {
		return Outcome{Detail: fmt.Sprintf("GET %s answered %s but the body does not match %q", shown, resp.Status, p.Body)}
	}
	return Outcome{OK: true, Detail: fmt.Sprintf("GET %s answered %s, body matches", shown, resp.Status)}
}

// redact hides a password in raw (user:password@host): check details go to the log, to
// `check` and into the rejection text kubelet shows.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

// unwrapURLError drops url.Error's repetition of the method and URL.
func unwrapURLError(err error) error {
	var u *url.Error
	if errors.As(err, &u) {
		return u.Err
	}
	return err
}

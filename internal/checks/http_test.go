package checks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// A password in an http check's URL never reaches the detail (logged, shown by check, and part
// of the rejection text kubelet shows).
func TestHTTPProberRedactsUserinfo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("synced 1"))
	}))
	defer srv.Close()
	withPassword := func(path string) string {
		return strings.Replace(srv.URL, "http://", "http://admin:hunter2@", 1) + path
	}
	tests := []struct {
		name, url string
		body      *regexp.Regexp
		ok        bool
		detail    string
	}{
		{"answers", withPassword("/ok"), nil, true, "answered 200 OK"},
		{"body matches", withPassword("/ok"), regexp.MustCompile(`synced [1-9]`), true, "body matches"},
		{"body does not match", withPassword("/ok"), regexp.MustCompile(`nope`), false, "does not match"},
		{"fails", withPassword("/fail"), nil, false, "503"},
		{"refused", "http://admin:hunter2@127.0.0.1:1/x", nil, false, "GET http://admin:xxxxx@127.0.0.1:1/x: "},
		{"no userinfo shown as is", srv.URL + "/ok", nil, true, "GET " + srv.URL + "/ok answered 200 OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := HTTPProber{URL: tt.url, Body: tt.body}.Probe(context.Background())
			if out.OK != tt.ok || !strings.Contains(out.Detail, tt.detail) {
				t.Errorf("Probe = %+v, want OK %v and a detail containing %q", out, tt.ok, tt.detail)
			}
			if strings.Contains(out.Detail, "hunter2") {
				t.Errorf("the password leaked: %q", out.Detail)
			}
		})
	}
}

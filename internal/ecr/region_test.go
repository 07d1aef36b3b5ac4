package ecr

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

type fakeRegionGetter func(ctx context.Context) (*imds.GetRegionOutput, error)

func (f fakeRegionGetter) GetRegion(ctx context.Context, _ *imds.GetRegionInput, _ ...func(*imds.Options)) (*imds.GetRegionOutput, error) {
	return f(ctx)
}

func TestNodeRegion(t *testing.T) {
	got, err := NodeRegion(context.Background(), fakeRegionGetter(func(ctx context.Context) (*imds.GetRegionOutput, error) {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > NodeRegionTimeout {
			t.Errorf("no short deadline: %v, %v", dl, ok)
		}
		return &imds.GetRegionOutput{Region: "eu-central-1"}, nil
	}))
	if err != nil || got != "eu-central-1" {
		t.Errorf("NodeRegion = %q, %v", got, err)
	}

	_, err = NodeRegion(context.Background(), fakeRegionGetter(func(context.Context) (*imds.GetRegionOutput, error) {
		return nil, errors.New("dial tcp 169.254.169.254:80: connect: no route to host")
	}))
	if err == nil || !strings.Contains(err.Error(), "instance metadata") || !strings.Contains(err.Error(), "no route to host") {
		t.Errorf("error: %v", err)
	}

	_, err = NodeRegion(context.Background(), fakeRegionGetter(func(context.Context) (*imds.GetRegionOutput, error) {
		return &imds.GetRegionOutput{}, nil
	}))
	if err == nil || !strings.Contains(err.Error(), "empty region") {
		t.Errorf("empty region: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err = NodeRegion(ctx, fakeRegionGetter(func(ctx context.Context) (*imds.GetRegionOutput, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang: %v", err)
	}
}

// The real IMDS client against a stand-in speaking IMDSv2: a token first, then the instance
// identity document, which GetRegion reads the region from.
func TestNodeRegionIMDSv2(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			_, _ = w.Write([]byte("imds-token"))
		case r.Method == http.MethodGet && r.URL.Path == "/latest/dynamic/instance-identity/document":
			if r.Header.Get("X-Aws-Ec2-Metadata-Token") != "imds-token" {
				http.Error(w, "no token", http.StatusUnauthorized)
				return
			}
			_, _ = w.Write([]byte(`{"accountId":"123456789012","instanceId":"i-0123456789abcdef0","region":"ap-southeast-7","availabilityZone":"ap-southeast-7a"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	got, err := NodeRegion(context.Background(), imds.New(imds.Options{Endpoint: srv.URL}))
	if err != nil || got != "ap-southeast-7" {
		t.Errorf("NodeRegion = %q, %v", got, err)
	}
}

package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	clog "github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// Health answers the readiness questions of /readyz. Every method must be safe for concurrent
// use; ContainerdReachable must honour ctx.
type Health interface {
	NRIConnected() bool
	ContainerdReachable(ctx context.Context) error
	// StandingBy reports whether an external plugin stands by for a pre-registered one that
	// gates the node, and why. Standing by is what it should do there: /readyz answers 200.
	StandingBy() (bool, string)
}

// Timeouts of the server.
const (
	// defaultReadyTimeout bounds one /readyz containerd probe.
	defaultReadyTimeout = 2 * time.Second
	// shutdownTimeout bounds waiting for in-flight requests once ctx ends.
	shutdownTimeout = 5 * time.Second
	// maxReasonLen bounds one line of a /readyz answer.
	maxReasonLen = 300
)

// Server serves /metrics, /healthz and /readyz over plain HTTP. It exposes no secrets: only the
// metrics (no error texts) and one-line readiness reasons.
type Server struct {
	addr string
	m    *Metrics
	h    Health
	// readyTimeout bounds one /readyz containerd probe (a field so tests can shorten it).
	readyTimeout time.Duration

	mu      sync.Mutex
	started bool
	ln      net.Listener
	done    chan struct{} // closed once the server has stopped
}

// NewServer returns a server for addr (host:port; ":0" picks a free port). m may be nil (no
// /metrics); h nil makes /readyz always answer 503.
func NewServer(addr string, m *Metrics, h Health) *Server {
	return &Server{addr: addr, m: m, h: h, readyTimeout: defaultReadyTimeout, done: make(chan struct{})}
}

// Start listens on the address, returning the error at once when that fails, then serves in the
// background until ctx ends, when it shuts down (in-flight requests get shutdownTimeout). Use
// Wait to wait for the shutdown. A Server starts once. It logs to ctx's logger.
func (s *Server) Start(ctx context.Context) error {
	logger := clog.G(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("metrics server: already started")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("metrics server: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("metrics server: %w", err)
	}
	s.started, s.ln = true, ln

	srv := &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(logWriter{logger}, "", 0),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			logger.WithError(err).Error("metrics server stopped")
		}
	}()
	go func() {
		defer close(s.done)
		select {
		case <-ctx.Done():
		case <-served:
		}
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		<-served
		logger.Debug("metrics server shut down")
	}()
	logger.WithField("addr", ln.Addr().String()).Info("serving /metrics, /healthz and /readyz")
	return nil
}

// Wait blocks until a started server has shut down; it returns at once if Start never
// succeeded.
func (s *Server) Wait() {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if started {
		<-s.done
	}
}

// Addr is the address the server listens on (the real port for ":0"), or the configured
// address before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.addr
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	if s.m != nil {
		mux.Handle("GET /metrics", s.m.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	return mux
}

// readyz answers 200 when NRI is connected and containerd reachable, or while standing by for a
// pre-registered plugin (saying so), else 503 with one line per failing part.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.h != nil {
		if standing, why := s.h.StandingBy(); standing {
			plain(w, http.StatusOK, "standing by: "+oneLine(why)+"\n")
			return
		}
	}
	var reasons []string
	if s.h == nil {
		reasons = append(reasons, "health: no health source configured")
	} else {
		if !s.h.NRIConnected() {
			reasons = append(reasons, "nri: not connected to containerd")
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.readyTimeout)
		err := s.h.ContainerdReachable(ctx)
		cancel()
		if err != nil {
			reasons = append(reasons, "containerd: unreachable: "+oneLine(err.Error()))
		}
	}
	if len(reasons) > 0 {
		plain(w, http.StatusServiceUnavailable, strings.Join(reasons, "\n")+"\n")
		return
	}
	plain(w, http.StatusOK, "ok\n")
}

func plain(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// oneLine collapses whitespace (multi-line errors) and bounds the length.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxReasonLen {
		s = strings.ToValidUTF8(s[:maxReasonLen], "") + "..."
	}
	return s
}

// logWriter sends net/http's own messages (bad requests, accept errors) to the logger.
type logWriter struct{ log *logrus.Entry }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Debug("metrics server: " + strings.TrimSpace(string(p)))
	return len(p), nil
}

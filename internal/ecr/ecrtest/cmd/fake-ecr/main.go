// Command fake-ecr serves the ecrtest fake ECR API on a loopback address, for end-to-end tests
// that need it in a process of its own:
//
//	fake-ecr --listen 127.0.0.1:0 --addr-file /tmp/x/addr --password secret --lifetime 12h
//
// Once it listens it writes host:port to --addr-file (atomically, so a reader never sees half
// of it) and serves until SIGINT or SIGTERM. GET /_fake/calls and POST /_fake/mode control it
// (see package ecrtest).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/atomicfile"
	"github.com/sandbox-guard/sandbox-guard/internal/ecr/ecrtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake-ecr:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends. ready, when set, hears the address once it listens (tests).
func run(ctx context.Context, args []string, stderr io.Writer, ready func(addr string)) error {
	fs := flag.NewFlagSet("fake-ecr", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	username := fs.String("username", ecrtest.DefaultUsername, "username in the token")
	password := fs.String("password", ecrtest.DefaultPassword, "password in the token")
	lifetime := fs.Duration("lifetime", ecrtest.DefaultLifetime, "token lifetime")
	account := fs.String("account", ecrtest.DefaultAccount, "account in proxyEndpoint")
	mode := fs.String("mode", string(ecrtest.OK), "how to answer at first (ok, access-denied, throttling, ...)")
	addrFile := fs.String("addr-file", "", "write host:port here once listening")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	m, err := ecrtest.ParseMode(*mode)
	if err != nil {
		return fmt.Errorf("--mode: %w", err)
	}
	if *lifetime <= 0 {
		return errors.New("--lifetime must be positive")
	}

	fake := ecrtest.New(ecrtest.Config{Username: *username, Password: *password, Lifetime: *lifetime, Account: *account, Mode: m})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	addr := ln.Addr().String()
	if *addrFile != "" {
		if err := atomicfile.Write(*addrFile, []byte(addr), 0o600); err != nil {
			_ = ln.Close()
			return fmt.Errorf("--addr-file: %w", err)
		}
	}
	fmt.Fprintf(stderr, "fake-ecr: listening on %s\n", addr)
	if ready != nil {
		ready(addr)
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	fake.Release()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

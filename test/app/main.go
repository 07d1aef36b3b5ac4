// Command app is the application image of the kubelet end-to-end tests and benchmark: like a
// service that needs another one at start (a database behind a Service, say), it exits 1 when it
// cannot connect to -require within -timeout, and otherwise runs until SIGTERM or SIGINT. Built
// statically, so the image needs nothing else.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	require := flag.String("require", "", "host:port that must accept a TCP connection at start")
	timeout := flag.Duration("timeout", 2*time.Second, "how long to try -require")
	flag.Parse()
	if *require != "" {
		c, err := net.DialTimeout("tcp", *require, *timeout)
		if err != nil {
			fmt.Fprintf(os.Stderr, "app: dependency %s not reachable: %v; exiting\n", *require, err)
			os.Exit(1)
		}
		_ = c.Close()
		fmt.Fprintf(os.Stderr, "app: dependency %s reachable\n", *require)
	}
	fmt.Fprintln(os.Stderr, "app: running")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}

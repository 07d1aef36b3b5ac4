// Command pause is the end-to-end tests' sandbox image: it blocks until SIGTERM or SIGINT, like
// registry.k8s.io/pause, and is built statically so the image needs nothing else.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}

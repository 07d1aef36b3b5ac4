package checks

import (
	"context"
	"fmt"
	"net"
	"strings"
)

// Address is one socket to try: network "unix" or "tcp" and the address for net.Dial.
type Address struct {
	Network, Address, Display string
}

// SocketProber passes when any of Addresses accepts a connection (the VPC CNI's ipamd listens on
// a unix socket in newer versions and on 127.0.0.1:50051 in older ones).
type SocketProber struct {
	Addresses []Address
}

// Probe dials each address in turn.
func (p SocketProber) Probe(ctx context.Context) Outcome {
	var failed []string
	var d net.Dialer
	for _, a := range p.Addresses {
		c, err := d.DialContext(ctx, a.Network, a.Address)
		if err == nil {
			_ = c.Close()
			return Outcome{OK: true, Detail: a.Display + " accepts connections"}
		}
		failed = append(failed, fmt.Sprintf("%s: %v", a.Display, shortNetError(err)))
	}
	return Outcome{Detail: "no socket accepts connections: " + strings.Join(failed, "; ")}
}

// shortNetError drops net.OpError's repetition of the address.
func shortNetError(err error) error {
	if op, ok := err.(*net.OpError); ok && op.Err != nil {
		return op.Err
	}
	return err
}

package iptables

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// We speak nf_tables netlink ourselves instead of using google/nftables: its Conn.ListChain
// (v0.3.0) sends the right single GETCHAIN request but wraps the reply error with %v, so a
// missing chain (ENOENT) cannot be told from a failure; its chain dump decodes whole Chain
// structs for every table of the family. One request type is all we need; mdlayher/netlink
// encodes the request attributes.

const (
	nftGetChain uint16 = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETCHAIN
	nftNewChain uint16 = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWCHAIN
	nftGetGen   uint16 = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN
	nftNewGen   uint16 = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN
	nftGetTable uint16 = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETTABLE
	nftNewTable uint16 = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE
)

// nftMaxNameLen is NFT_NAME_MAXLEN (NUL included), the limit for table and chain names.
const nftMaxNameLen = 256

// nftDumpRetries bounds retries of a chain dump that the kernel flags as interrupted (the
// ruleset changed while it was being dumped, e.g. kube-proxy syncing).
const nftDumpRetries = 3

var errDumpInterrupted = errors.New("chain dump interrupted by concurrent ruleset changes")

func nftFamily(f Family) uint8 {
	if f == IPv6 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

// nfgenmsg is the 4-byte header every nfnetlink message starts with: family, version, res_id.
func nfgenmsg(f Family) []byte {
	return []byte{nftFamily(f), unix.NFNETLINK_V0, 0, 0}
}

// nftChainExists sends one non-dump NFT_MSG_GETCHAIN naming table and chain. The kernel looks
// the chain up by name and replies with it or with ENOENT (chain or table missing).
func nftChainExists(ctx context.Context, f Family, table, chain string) (bool, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_CHAIN_TABLE, table)
	ae.String(unix.NFTA_CHAIN_NAME, chain)
	attrs, err := ae.Encode()
	if err != nil {
		return false, err
	}
	found := false
	err = nftExecute(ctx, nftGetChain, unix.NLM_F_REQUEST, append(nfgenmsg(f), attrs...), func(data []byte) error {
		t, n, err := nftChainNames(data)
		found = found || (err == nil && string(t) == table && string(n) == chain)
		return err
	})
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !found {
		return false, fmt.Errorf("kernel replied without chain %s", chain)
	}
	return true, nil
}

// nftChains dumps the chains (not rules) of the family and keeps those of table: a chain dump
// covers every table of the family, so the filtering happens here.
func nftChains(ctx context.Context, f Family, table string) ([]string, error) {
	for attempt := 1; ; attempt++ {
		var names []string
		err := nftExecute(ctx, nftGetChain, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, nfgenmsg(f), func(data []byte) error {
			t, n, err := nftChainNames(data)
			if err == nil && string(t) == table {
				names = append(names, string(n))
			}
			return err
		})
		if errors.Is(err, errDumpInterrupted) && attempt < nftDumpRetries {
			continue
		}
		if err != nil {
			return nil, err
		}
		return names, nil
	}
}

// nftTableExists sends one non-dump NFT_MSG_GETTABLE naming table: the kernel replies with
// the table or ENOENT, whatever the table holds.
func nftTableExists(ctx context.Context, f Family, table string) (bool, error) {
	if len(table) >= nftMaxNameLen {
		return false, nil
	}
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_TABLE_NAME, table)
	attrs, err := ae.Encode()
	if err != nil {
		return false, err
	}
	replied := false
	err = nftExecute(ctx, nftGetTable, unix.NLM_F_REQUEST, append(nfgenmsg(f), attrs...), func([]byte) error {
		replied = true
		return nil
	})
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("asking nft %s for table %s: %w", f, table, err)
	}
	return replied, nil
}

// nftGeneration asks for the ruleset generation of the calling thread's network namespace
// (NFT_MSG_GETGEN): a counter the kernel bumps with every committed change to any nf_tables
// table of any family. Its cost does not depend on the ruleset.
func nftGeneration(ctx context.Context) (uint32, error) {
	var gen uint32
	found := false
	err := nftExecute(ctx, nftGetGen, unix.NLM_F_REQUEST, []byte{unix.NFPROTO_UNSPEC, unix.NFNETLINK_V0, 0, 0}, func(data []byte) error {
		g, ok, err := nftGenID(data)
		if ok {
			gen, found = g, true
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, errors.New("kernel replied without a generation id")
	}
	return gen, nil
}

// nftDefaultTimeout bounds one exchange when ctx has no deadline. The kernel answers while we
// send (and fills further dump parts while we receive), so a wait this long means a broken
// kernel rather than a slow one.
const nftDefaultTimeout = 10 * time.Second

// Receive buffers hold one datagram: the kernel sizes dump parts to at most 32 KiB; a single
// chain is well under 1 KiB (zeroing a bigger buffer costs more than the question).
const (
	nftDumpBuf = 64 << 10
	nftOneBuf  = 8 << 10
)

// nftExecute opens a NETLINK_NETFILTER socket on the calling thread (so it lands in that
// thread's network namespace), sends one request of type typ (NFT_MSG_GETCHAIN or
// NFT_MSG_GETGEN, NFT_MSG_GETTABLE) with flags and payload, and hands each reply message's payload (valid only
// during the call) to each, up to the last part. A
// kernel error comes back as a unix.Errno; a dump that saw the ruleset change as
// errDumpInterrupted.
//
// It uses plain blocking syscalls rather than mdlayher/netlink's Conn: that one goes through
// the Go netpoller, and on a thread locked into another namespace (ns.WithNetNSPath) every
// wake-up is a hand-off between OS threads; a question cost ~150-190us that way against
// ~20-30us here. Cancellation is checked before sending; a deadline becomes the receive timeout.
func nftExecute(ctx context.Context, typ, flags uint16, payload []byte, each func(data []byte) error) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("opening netfilter netlink socket: %w", err)
	}
	defer func() { _ = unix.Close(fd) }() // a socket: Close reports nothing to act on

	timeout := nftDefaultTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return context.DeadlineExceeded
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("setting netlink receive timeout: %w", err)
	}

	req := nftRequest(typ, flags, payload)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := retryEINTR(func() error { return unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}) }); err != nil {
		return fmt.Errorf("sending netlink request: %w", err)
	}

	dump := flags&unix.NLM_F_DUMP == unix.NLM_F_DUMP
	bufLen := nftOneBuf
	if dump {
		bufLen = nftDumpBuf
	}
	buf := make([]byte, bufLen)
	interrupted := false
	for {
		n, err := nftReceive(ctx, fd, buf, timeout)
		if err != nil {
			return err
		}
		for b := buf[:n]; len(b) > 0; {
			m, rest, err := nextNetlinkMessage(b)
			if err != nil {
				return err
			}
			b = rest
			if m.seq != nftSeq {
				continue // not ours (cannot happen on a fresh socket, but costs nothing)
			}
			interrupted = interrupted || m.flags&unix.NLM_F_DUMP_INTR != 0
			switch m.typ {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				// Both may carry a negative errno: ERROR always (0 = ack), DONE when a dump
				// failed part-way.
				if len(m.data) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(m.data)); errno < 0 {
						return unix.Errno(-errno)
					}
				} else if m.typ == unix.NLMSG_ERROR {
					return errors.New("short netlink error message")
				}
				if interrupted {
					return errDumpInterrupted
				}
				return nil
			case nftNewChain, nftNewGen, nftNewTable:
				if m.typ != nftReplyType(typ) {
					return fmt.Errorf("unexpected netlink message type %#x in the reply to %#x", m.typ, typ)
				}
				if err := each(m.data); err != nil {
					return err
				}
			default:
				return fmt.Errorf("unexpected netlink message type %#x in the reply to %#x", m.typ, typ)
			}
			if !dump && m.flags&unix.NLM_F_MULTI == 0 {
				return nil
			}
		}
	}
}

// nftReceive reads one reply datagram into buf; timeout is the socket's receive timeout.
func nftReceive(ctx context.Context, fd int, buf []byte, timeout time.Duration) (int, error) {
	var n, recvFlags int
	err := retryEINTR(func() (err error) {
		n, _, recvFlags, _, err = unix.Recvmsg(fd, buf, nil, 0)
		return err
	})
	if errors.Is(err, unix.EAGAIN) {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("no netlink reply within %v", timeout)
	}
	if err != nil {
		return 0, fmt.Errorf("receiving netlink reply: %w", err)
	}
	if recvFlags&unix.MSG_TRUNC != 0 {
		return 0, fmt.Errorf("netlink reply larger than %d bytes", len(buf))
	}
	return n, nil
}

// nftSeq is the sequence number of every request: one request per socket, so nothing else
// can answer.
const nftSeq = 1

// nftReplyType is the message type the kernel answers request type typ with.
func nftReplyType(typ uint16) uint16 {
	switch typ {
	case nftGetGen:
		return nftNewGen
	case nftGetTable:
		return nftNewTable
	}
	return nftNewChain
}

// nftRequest is the netlink message of type typ carrying flags and payload.
func nftRequest(typ, flags uint16, payload []byte) []byte {
	req := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(payload)+3)
	req = append(req, payload...)
	for len(req)%4 != 0 { // NLMSG_ALIGN; attributes are padded already
		req = append(req, 0)
	}
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], typ)
	binary.NativeEndian.PutUint16(req[6:], flags)
	binary.NativeEndian.PutUint32(req[8:], nftSeq)
	return req
}

// nlMessage is one netlink message of a received datagram.
type nlMessage struct {
	typ, flags uint16
	seq        uint32
	data       []byte // the payload after the header, within the receive buffer
}

// nextNetlinkMessage splits the first message off b, what is left of a received datagram.
func nextNetlinkMessage(b []byte) (m nlMessage, rest []byte, err error) {
	if len(b) < unix.NLMSG_HDRLEN {
		return m, nil, fmt.Errorf("short netlink message (%d bytes)", len(b))
	}
	l := int(binary.NativeEndian.Uint32(b[0:]))
	if l < unix.NLMSG_HDRLEN || l > len(b) {
		return m, nil, fmt.Errorf("bad netlink message length %d (%d bytes left)", l, len(b))
	}
	m = nlMessage{
		typ:   binary.NativeEndian.Uint16(b[4:]),
		flags: binary.NativeEndian.Uint16(b[6:]),
		seq:   binary.NativeEndian.Uint32(b[8:]),
		data:  b[unix.NLMSG_HDRLEN:l],
	}
	return m, b[min((l+3)&^3, len(b)):], nil
}

func retryEINTR(f func() error) error {
	for {
		if err := f(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// nftChainNames returns the table and chain name attributes of an NFT_MSG_NEWCHAIN payload
// (nfgenmsg first), as slices of data. Walked by hand rather than with netlink.AttributeDecoder,
// which allocates per message: a chain dump of a 100k-rule table carries ~40k messages.
func nftChainNames(data []byte) (table, name []byte, err error) {
	if len(data) < 4 {
		return nil, nil, errors.New("short chain message")
	}
	for b := data[4:]; len(b) > 0; {
		if len(b) < unix.NLA_HDRLEN {
			return nil, nil, fmt.Errorf("short netlink attribute (%d bytes)", len(b))
		}
		l := int(binary.NativeEndian.Uint16(b[0:]))
		typ := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < unix.NLA_HDRLEN || l > len(b) {
			return nil, nil, fmt.Errorf("bad netlink attribute length %d (%d bytes left)", l, len(b))
		}
		v := b[unix.NLA_HDRLEN:l]
		if i := bytes.IndexByte(v, 0); i >= 0 {
			v = v[:i] // strings are NUL-terminated
		}
		switch typ {
		case unix.NFTA_CHAIN_TABLE:
			table = v
		case unix.NFTA_CHAIN_NAME:
			name = v
		}
		b = b[min((l+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1), len(b)):]
	}
	return table, name, nil
}

// nftGenID returns the NFTA_GEN_ID attribute (big endian, like every nf_tables integer) of an
// NFT_MSG_NEWGEN payload (nfgenmsg first); ok is false when it has none.
func nftGenID(data []byte) (gen uint32, ok bool, err error) {
	if len(data) < 4 {
		return 0, false, errors.New("short generation message")
	}
	for b := data[4:]; len(b) > 0; {
		if len(b) < unix.NLA_HDRLEN {
			return 0, false, fmt.Errorf("short netlink attribute (%d bytes)", len(b))
		}
		l := int(binary.NativeEndian.Uint16(b[0:]))
		typ := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < unix.NLA_HDRLEN || l > len(b) {
			return 0, false, fmt.Errorf("bad netlink attribute length %d (%d bytes left)", l, len(b))
		}
		if typ == unix.NFTA_GEN_ID {
			if l != unix.NLA_HDRLEN+4 {
				return 0, false, fmt.Errorf("generation id of %d bytes", l-unix.NLA_HDRLEN)
			}
			return binary.BigEndian.Uint32(b[unix.NLA_HDRLEN:]), true, nil
		}
		b = b[min((l+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1), len(b)):]
	}
	return 0, false, nil
}

package iptables

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ip_tables / ip6_tables userspace ABI (linux/netfilter_ipv{4,6}/ip{,6}_tables.h). The
// structures are read with encoding/binary in host byte order; offsets were checked against
// gcc's offsetof on amd64.
const (
	iptSoGetInfo    = 64 // IPT_SO_GET_INFO == IP6T_SO_GET_INFO (IPT_BASE_CTL)
	iptSoGetEntries = 65 // IPT_SO_GET_ENTRIES == IP6T_SO_GET_ENTRIES

	xtTableMaxNameLen = 32 // XT_TABLE_MAXNAMELEN, NUL included
	xtFuncMaxNameLen  = 30 // XT_FUNCTION_MAXNAMELEN: size of xt_error_target.errorname
	xtTargetNameLen   = 29 // xt_entry_target.u.user.name
	xtTargetHeaderLen = 32 // sizeof(struct xt_entry_target); target data follows
	xtTargetNameOff   = 2  // after u.user.target_size (u16)
	legacyErrorTarget = "ERROR"
	legacyMaxChainLen = xtFuncMaxNameLen - 1 // longest chain name the kernel can store

	// struct ipt_getinfo (ip6t_getinfo is identical): name[32], valid_hooks, hook_entry[5],
	// underflow[5], num_entries, size.
	getinfoLen        = 84
	getinfoValidHooks = 32
	getinfoEntriesOff = 76
	getinfoSizeOff    = 80
	nfInetNumHooks    = 5

	// struct ipt_get_entries (ip6t_get_entries is identical): name[32], size, then the
	// entries, aligned like ipt_entry.
	getEntriesSizeOff   = 32
	getEntriesUnaligned = 36

	legacyEntriesRetry = 3 // reads in a row that may find the table resized in between
)

// hookName is the builtin chain of NF_INET_* hook h, which is bit h of valid_hooks.
func hookName(h int) string {
	return [nfInetNumHooks]string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}[h]
}

// cU64Align is the C alignment of __u64: xt_counters inside ipt_entry pads the structures to it.
// It is 4 only on i386 among the architectures Go supports on Linux.
func cU64Align() int {
	if runtime.GOARCH == "386" {
		return 4
	}
	return 8
}

func alignUp(n, a int) int { return (n + a - 1) &^ (a - 1) }

// entryLayout locates the fields of ipt_entry / ip6t_entry that the walk needs.
type entryLayout struct {
	size         int // sizeof the entry header (matches start at this offset)
	targetOffset int // offset of __u16 target_offset
	nextOffset   int // offset of __u16 next_offset
}

// layoutFor: ipt_ip is 84 bytes, ip6t_ip6 136 (in6_addr x4, ifnames, proto/tos/flags, padded);
// then nfcache u32, target_offset u16, next_offset u16, comefrom u32, xt_counters (2 x u64).
func layoutFor(f Family, u64Align int) entryLayout {
	ipLen := 84
	if f == IPv6 {
		ipLen = 136
	}
	return entryLayout{
		size:         alignUp(ipLen+12, u64Align) + 16,
		targetOffset: ipLen + 4,
		nextOffset:   ipLen + 6,
	}
}

// legacyChains reads table once and returns its builtin chains (from the valid hooks) followed
// by its user chains, or nil when the table does not exist in this network namespace.
func legacyChains(f Family, table string) ([]string, error) {
	if len(table) >= xtTableMaxNameLen {
		return nil, nil // x_tables cannot hold such a name
	}
	// Asking the kernel for a table it has not instantiated in this namespace makes it load the
	// table module and create an empty table (iptables-legacy does the same). The names file
	// avoids that side effect: an unlisted table cannot hold chains.
	if listed, known := legacyTableListed(f, table); known && !listed {
		return nil, nil
	}
	return readLegacyTable(f, table)
}

// legacyTableInUse reports whether table holds anything besides its builtin chains' policies
// (a rule or a user chain), from IPT_SO_GET_INFO alone: an unused table has one entry per
// builtin chain and the end marker. This costs the same at 10 rules as at 100k. A table that
// does not exist is not in use (and, as in legacyChains, is not created by asking).
func legacyTableInUse(f Family, table string) (bool, error) {
	if len(table) >= xtTableMaxNameLen {
		return false, nil
	}
	if listed, known := legacyTableListed(f, table); known && !listed {
		return false, nil
	}
	af, level := unix.AF_INET, unix.SOL_IP
	if f == IPv6 {
		af, level = unix.AF_INET6, unix.SOL_IPV6
	}
	fd, err := unix.Socket(af, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return false, fmt.Errorf("opening raw socket: %w", err)
	}
	defer func() { _ = unix.Close(fd) }()
	info := make([]byte, getinfoLen)
	copy(info, table)
	if err := getsockopt(fd, level, iptSoGetInfo, info); err != nil {
		if legacyAbsent(err) {
			return false, nil
		}
		return false, fmt.Errorf("getsockopt GET_INFO: %w", err)
	}
	hooks := len(builtinChains(binary.NativeEndian.Uint32(info[getinfoValidHooks:])))
	return int(binary.NativeEndian.Uint32(info[getinfoEntriesOff:])) > hooks+1, nil
}

// readLegacyTable asks the kernel for table: IPT_SO_GET_INFO for its size and hooks, then
// IPT_SO_GET_ENTRIES for the whole table, walked once.
func readLegacyTable(f Family, table string) ([]string, error) {
	af, level := unix.AF_INET, unix.SOL_IP
	if f == IPv6 {
		af, level = unix.AF_INET6, unix.SOL_IPV6
	}
	fd, err := unix.Socket(af, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("opening raw socket: %w", err)
	}
	defer func() { _ = unix.Close(fd) }() // a socket: Close reports nothing to act on

	for attempt := 1; ; attempt++ {
		info := make([]byte, getinfoLen)
		copy(info, table)
		if err := getsockopt(fd, level, iptSoGetInfo, info); err != nil {
			if legacyAbsent(err) {
				return nil, nil
			}
			return nil, fmt.Errorf("getsockopt GET_INFO: %w", err)
		}
		validHooks := binary.NativeEndian.Uint32(info[getinfoValidHooks:])
		size := binary.NativeEndian.Uint32(info[getinfoSizeOff:])

		user, err := readEntries(fd, level, table, size, layoutFor(f, cU64Align()))
		switch {
		case errors.Is(err, unix.EAGAIN) && attempt < legacyEntriesRetry:
			continue // the table was replaced between the two calls and changed size
		case errors.Is(err, unix.EAGAIN):
			return nil, fmt.Errorf("table changed size during %d reads in a row: %w", attempt, err)
		case err != nil && legacyAbsent(err):
			return nil, nil
		case err != nil:
			return nil, err
		}
		return append(builtinChains(validHooks), user...), nil
	}
}

// readEntries copies the table's size bytes of entries out of the kernel and walks them. The
// buffer is as big as the table (tens of MB at 100k kube-proxy rules), so it lives in an anonymous
// mapping returned to the system right after the walk instead of growing the Go heap.
func readEntries(fd, level int, table string, size uint32, l entryLayout) ([]string, error) {
	hdr := alignUp(getEntriesUnaligned, cU64Align())
	buf, err := unix.Mmap(-1, 0, hdr+int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("allocating %d bytes for table entries: %w", hdr+int(size), err)
	}
	defer func() { _ = unix.Munmap(buf) }() // fails only for a slice Mmap did not return
	copy(buf, table)
	binary.NativeEndian.PutUint32(buf[getEntriesSizeOff:], size)
	if err := getsockopt(fd, level, iptSoGetEntries, buf); err != nil {
		if errors.Is(err, unix.EAGAIN) || legacyAbsent(err) {
			return nil, err
		}
		return nil, fmt.Errorf("getsockopt GET_ENTRIES (%d bytes): %w", size, err)
	}
	return parseEntries(buf[hdr:], l) // names are copied out as Go strings
}

// legacyAbsent: ENOENT = no such table; ENOPROTOOPT = ip_tables / ip6_tables not in the kernel.
func legacyAbsent(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOPROTOOPT)
}

func builtinChains(validHooks uint32) []string {
	var out []string
	for h := range nfInetNumHooks {
		if validHooks&(1<<h) != 0 {
			out = append(out, hookName(h))
		}
	}
	return out
}

// legacyTableListed reports whether table is in the x_tables names file of the calling thread's
// network namespace (/proc/thread-self: /proc/self/net follows the main thread instead). known
// is false when that cannot be told, and the caller should ask the kernel directly.
func legacyTableListed(f Family, table string) (listed, known bool) {
	name := "/proc/thread-self/net/ip_tables_names"
	if f == IPv6 {
		name = "/proc/thread-self/net/ip6_tables_names"
	}
	data, err := os.ReadFile(name)
	if err != nil {
		// No names file while /proc/thread-self/net exists: ip{,6}_tables is not loaded, so there
		// is no legacy table at all.
		if errors.Is(err, os.ErrNotExist) {
			if _, statErr := os.Stat("/proc/thread-self/net/dev"); statErr == nil {
				return false, true
			}
		}
		return false, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if sc.Text() == table {
			return true, true
		}
	}
	return false, true
}

// getsockopt with a caller-sized buffer; x/sys/unix has no wrapper for arbitrary structures.
// IPT_SO_GET_ENTRIES insists that the length equals the header plus the announced size.
func getsockopt(fd, level, opt int, buf []byte) error {
	l := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
	runtime.KeepAlive(buf)
	if errno != 0 {
		return errno
	}
	return nil
}

// parseEntries walks the entries of a table once and returns the user chain names in table
// order. A user chain starts with an entry whose target is ERROR and whose target data is the
// chain name; the table ends with one more ERROR entry (named "ERROR"), which is not a chain.
func parseEntries(b []byte, l entryLayout) ([]string, error) {
	var chains []string
	sawEnd := false
	for off := 0; off < len(b); {
		if len(b)-off < l.size {
			return nil, fmt.Errorf("truncated entry at offset %d: %d bytes left, header is %d", off, len(b)-off, l.size)
		}
		e := b[off:]
		target := int(binary.NativeEndian.Uint16(e[l.targetOffset:]))
		next := int(binary.NativeEndian.Uint16(e[l.nextOffset:]))
		if target < l.size || next < target+xtTargetHeaderLen || next > len(e) {
			return nil, fmt.Errorf("corrupt entry at offset %d: target_offset %d, next_offset %d, %d bytes left",
				off, target, next, len(e))
		}
		t := e[target:next]
		if string(cBytes(t[xtTargetNameOff:xtTargetNameOff+xtTargetNameLen])) == legacyErrorTarget { // no allocation
			data := t[xtTargetHeaderLen:]
			name := string(cBytes(data[:min(len(data), xtFuncMaxNameLen)]))
			if off+next == len(b) {
				sawEnd = true // the last entry is the end marker, named "ERROR"
			} else {
				if name == "" {
					return nil, fmt.Errorf("chain head at offset %d has no name", off)
				}
				chains = append(chains, name)
			}
		}
		off += next
	}
	if !sawEnd {
		return nil, errors.New("table has no end marker (ERROR entry)")
	}
	return chains, nil
}

// cBytes cuts a fixed-size C string field at its NUL.
func cBytes(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

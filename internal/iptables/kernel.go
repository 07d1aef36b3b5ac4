package iptables

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// realKernel asks the kernel of the calling thread's network namespace.
type realKernel struct{}

func (realKernel) nftChainExists(ctx context.Context, f Family, table, chain string) (bool, error) {
	return nftChainExists(ctx, f, table, chain)
}

func (realKernel) nftChains(ctx context.Context, f Family, table string) ([]string, error) {
	return nftChains(ctx, f, table)
}

func (realKernel) nftGeneration(ctx context.Context) (uint32, error) { return nftGeneration(ctx) }

func (realKernel) nftTableExists(ctx context.Context, f Family, table string) (bool, error) {
	return nftTableExists(ctx, f, table)
}

func (realKernel) legacyChains(f Family, table string) ([]string, error) {
	return legacyChains(f, table)
}

func (realKernel) legacyInUse(f Family, table string) (bool, error) {
	return legacyTableInUse(f, table)
}

// netns is the inode of /proc/thread-self/ns/net: the calling thread's namespace, which is
// the one a socket opened next on this thread lands in.
func (realKernel) netns() (netnsID, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return netnsID{}, fmt.Errorf("identifying the network namespace: %w", err)
	}
	return netnsID{dev: st.Dev, ino: st.Ino}, nil
}

package testbed

import (
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// The real node's pod network: a bridge with a private range that exists only inside this
// machine. Pod traffic is never masqueraded or forwarded, and the ranges nothing serves here (the
// service CIDR without kube-proxy, kwok's fake pod IPs) are blackholed, so no packet of the bed
// leaves the machine.
const (
	BridgeName    = "kib0"
	BridgeCIDR    = "10.89.0.0/16"
	BridgeGateway = "10.89.0.1"
	KwokPodCIDR   = "10.244.0.0/16"
)

const bedLock = "/run/kratos-injector-bed.lock"

// Network is the bed's host network state.
type Network struct {
	Gateway string
}

// SetupNetwork creates the bridge, the blackhole routes and the no-egress rule. Only one bed per
// machine may own them: an exclusive lock guards them, and state left by a bed that died without
// cleaning up (the lock is free, the bridge exists) is removed first.
func (b *Bed) SetupNetwork() (*Network, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the real node needs root (bridge, containerd, kubelet): run the e2e tests as root")
	}
	lf, err := os.OpenFile(bedLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bed lock: %w", err)
	}
	// Another bed on this machine (a concurrent test run) owns the bridge: wait for it.
	deadline := time.Now().Add(15 * time.Minute)
	for {
		err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			lf.Close()
			return nil, fmt.Errorf("another test bed has held %s for 15 minutes: %w", bedLock, err)
		}
		time.Sleep(time.Second)
	}
	b.Defer(func() {
		_ = os.Remove(stateFile)
		_ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
		lf.Close()
	})
	recoverStale() // a bed that was killed before its cleanups ran
	cleanupNetwork()
	b.mu.Lock()
	b.ownsLock = true
	b.mu.Unlock()
	b.recordState()
	if err := run("ip", "link", "add", BridgeName, "type", "bridge"); err != nil {
		return nil, err
	}
	b.Defer(cleanupNetwork)
	if err := run("ip", "addr", "add", BridgeGateway+"/16", "dev", BridgeName); err != nil {
		return nil, err
	}
	if err := run("ip", "link", "set", BridgeName, "up"); err != nil {
		return nil, err
	}
	for _, cidr := range []string{ServiceCIDR, KwokPodCIDR} {
		if err := run("ip", "route", "replace", "blackhole", cidr); err != nil {
			return nil, err
		}
	}
	// Belt and braces next to ip_forward=0: nothing from the bridge is forwarded anywhere else.
	if err := run("iptables", "-w", "-I", "FORWARD", "-i", BridgeName, "!", "-o", BridgeName, "-j", "DROP",
		"-m", "comment", "--comment", "kratos-injector-bed"); err != nil {
		return nil, err
	}
	_ = os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-iptables", []byte("1"), 0o644)
	return &Network{Gateway: BridgeGateway}, nil
}

// cleanupNetwork removes what SetupNetwork made; every step tolerates absence.
func cleanupNetwork() {
	for {
		if err := run("iptables", "-w", "-D", "FORWARD", "-i", BridgeName, "!", "-o", BridgeName, "-j", "DROP",
			"-m", "comment", "--comment", "kratos-injector-bed"); err != nil {
			break
		}
	}
	for _, cidr := range []string{ServiceCIDR, KwokPodCIDR} {
		_ = run("ip", "route", "del", "blackhole", cidr)
	}
	if _, err := net.InterfaceByName(BridgeName); err == nil {
		_ = run("ip", "link", "del", BridgeName)
	}
}

// Blackholes lists the kernel's blackhole routes (`ip route show type blackhole`).
func Blackholes() (string, error) { return output("ip", "route", "show", "type", "blackhole") }

// RouteGet asks the kernel how it would send a packet to addr (`ip route get`); for a
// blackholed address it fails.
func RouteGet(addr string) (string, error) {
	out, err := output("ip", "route", "get", addr)
	return strings.TrimSpace(out), err
}

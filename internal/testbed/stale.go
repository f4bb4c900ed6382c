package testbed

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The bed that holds the machine-wide lock records its directory and the PIDs of its processes
// here, so that a later bed can clean up after one whose test binary was killed before its
// cleanups ran (Pdeathsig covers most of that; this covers the containers, which are children of
// containerd's shims, and the host state).
const stateFile = "/run/kratos-injector-bed.state"

type bedState struct {
	Dir   string   `json:"dir"`
	PIDs  []int    `json:"pids"`
	Names []string `json:"names"`
}

// recordState writes the state file when this bed owns the machine-wide lock.
func (b *Bed) recordState() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.ownsLock {
		return
	}
	st := bedState{Dir: b.Dir}
	for _, p := range b.procs {
		st.PIDs = append(st.PIDs, p.Cmd.Process.Pid)
		st.Names = append(st.Names, p.Name)
	}
	data, _ := json.Marshal(st)
	_ = os.WriteFile(stateFile, data, 0o600)
}

// recoverStale stops what a dead bed left behind: its processes (only PIDs it recorded whose
// command line still names its directory, so a reused PID is never touched), its containers, its
// mounts, and its directory. Called with the lock held.
func recoverStale() {
	data, err := os.ReadFile(stateFile)
	if err != nil {
		return
	}
	defer os.Remove(stateFile)
	var st bedState
	if json.Unmarshal(data, &st) != nil || st.Dir == "" || !strings.HasPrefix(filepath.Base(st.Dir), "kratos-injector-bed-") {
		return
	}
	fmt.Fprintf(os.Stderr, "bed: cleaning up after a bed that did not stop (%s)\n", st.Dir)
	ours := func(pid int) bool {
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		return err == nil && strings.Contains(string(cmdline), st.Dir)
	}
	kill := func(pid int) {
		if !ours(pid) {
			return
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 50 && ours(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The kubelet first (it would restart containers), then the containers through containerd.
	for i, n := range st.Names {
		if n == "kubelet" {
			kill(st.PIDs[i])
		}
	}
	sock := filepath.Join(st.Dir, "node", "containerd", "containerd.sock")
	if _, err := os.Stat(sock); err == nil {
		if ctr, err := HostTool("ctr", "/usr/bin/ctr"); err == nil {
			(&Node{ctr: ctr, socket: sock}).removeTasks()
		}
	}
	for _, pid := range st.PIDs {
		kill(pid)
	}
	mounts := mountsUnder(st.Dir)
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		if err := run("umount", m); err != nil {
			_ = run("umount", "-l", m)
		}
	}
	(&Node{dir: st.Dir}).cleanupHost()
	_ = os.RemoveAll(st.Dir)
}

package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a child process the harness started: a control-plane component,
// a per-node agent or a workload inside a pod. Its output goes to LogPath.
type Process struct {
	Name    string
	LogPath string
	argv    []string
	env     []string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // valid once done is closed
	pidfile string
}

// stopGrace is how long a process gets between SIGTERM and SIGKILL.
const stopGrace = 10 * time.Second

// startProcess starts argv with its output appended to logPath. The child gets
// its own process group, so Stop also reaches what it forked (Wine starts a
// wineserver and helpers), and SIGKILL when the harness dies, so a crashed
// test run does not leave an apiserver behind. When pidDir is not empty the
// PID and its start time are recorded there for Sweep.
func startProcess(name, logPath, pidDir string, env, argv []string) (*Process, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	fmt.Fprintf(logf, "=== %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, argv: argv, env: env, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if pidDir != "" {
		p.pidfile = filepath.Join(pidDir, name+".pid")
		if err := writePidfile(p.pidfile, cmd.Process.Pid); err != nil {
			_ = p.Stop()
			return nil, err
		}
	}
	return p, nil
}

// PID is the process ID (the process group ID too).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Wait waits for the process to exit by itself.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop sends SIGTERM to the process group, SIGKILL after stopGrace, and waits
// for the exit. Stopping a stopped process is a no-op.
func (p *Process) Stop() error {
	defer p.removePidfile()
	if done, _ := p.Exited(); done {
		return nil
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, pgid)
		}
	}
	// Children that left the group die with the SIGKILL too; reap stragglers
	// that stayed in it (a process group outlives its leader).
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return nil
}

func (p *Process) removePidfile() {
	if p.pidfile != "" {
		_ = os.Remove(p.pidfile)
	}
}

// LogTail returns the last n bytes of the process's log, for error messages.
func (p *Process) LogTail(n int) string { return fileTail(p.LogPath, n) }

func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// A pidfile holds "PID STARTTIME": the start time (in clock ticks since boot,
// /proc/PID/stat field 22) tells a leftover of ours from an unrelated process
// that reused the PID.
func writePidfile(path string, pid int) error {
	st, err := procStartTime(pid)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, fmt.Appendf(nil, "%d %d\n", pid, st), 0o644)
}

func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 overall
}

// killPidfiles SIGKILLs the process groups recorded in dir whose PID still
// names the same process, and removes the pidfiles.
func killPidfiles(dir string) []string {
	var killed []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		var pid int
		var st uint64
		b, err := os.ReadFile(path)
		if err == nil {
			_, err = fmt.Sscanf(string(b), "%d %d", &pid, &st)
		}
		if err == nil && pid > 1 {
			if now, err := procStartTime(pid); err == nil && now == st {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				waitGone(pid, 5*time.Second)
				killed = append(killed, fmt.Sprintf("%s (pid %d)", strings.TrimSuffix(e.Name(), ".pid"), pid))
			}
		}
		_ = os.Remove(path)
	}
	return killed
}

// killPIDs SIGKILLs every PID and waits until they are gone.
func killPIDs(pids []int) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range pids {
		waitGone(pid, 5*time.Second)
	}
}

func waitGone(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		// A killed child of ours stays a zombie until its Wait goroutine
		// reaps it; a zombie holds no sockets or namespaces.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if i := bytes.LastIndexByte(b, ')'); i >= 0 && len(b) > i+2 && b[i+2] == 'Z' {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processSet tracks the processes of one owner (the cluster, a node, a pod) so
// teardown can stop them in reverse start order.
type processSet struct {
	mu    sync.Mutex
	procs []*Process
}

func (s *processSet) add(p *Process) {
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
}

func (s *processSet) remove(p *Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, q := range s.procs {
		if q == p {
			s.procs = append(s.procs[:i], s.procs[i+1:]...)
			return
		}
	}
}

// stopAll stops every process, newest first, and returns the errors joined.
func (s *processSet) stopAll() error {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		errs = append(errs, procs[i].Stop())
	}
	return errors.Join(errs...)
}

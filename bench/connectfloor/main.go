//go:build linux

// Command connectfloor measures the kernel's share of the agent's probing
// cost: N bare TCP connects per second (socket, blocking connect, RST close),
// in the bursts the agent's coalescing scheduler makes, with no Go runtime
// work around them beyond a goroutine per burst slice. On loopback the
// listener's half of every handshake is charged to the connecting process
// too, as it is to the agent in bench/agent-load.sh.
//
//	connectfloor -peers 100 -per-peer 4 -burst 250ms -seconds 30
//
// Peers are 127.1.x.y:PORT, as in bench/agent-load.sh (one listener on
// 0.0.0.0 answers for all of them inside a network namespace).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	peers := flag.Int("peers", 100, "peer addresses 127.1.x.y")
	perPeer := flag.Int("per-peer", 4, "connects per peer per second (the agent's tcp, http, netpol-allow, netpol-deny)")
	burst := flag.Duration("burst", 250*time.Millisecond, "one burst every this long")
	port := flag.Int("port", 9441, "peer port")
	seconds := flag.Int("seconds", 30, "measured duration")
	workers := flag.Int("workers", 4, "goroutines per burst")
	flag.Parse()
	if err := run(*peers, *perPeer, *burst, *port, *seconds, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "connectfloor:", err)
		os.Exit(1)
	}
}

func run(peers, perPeer int, burst time.Duration, port, seconds, workers int) error {
	if peers < 1 || peers > 62500 || perPeer < 1 || burst <= 0 || workers < 1 {
		return errors.New("peers 1-62500, per-peer, burst and workers positive")
	}
	bursts := int(time.Duration(seconds) * time.Second / burst)
	perBurst := max(1, int(float64(peers*perPeer)*burst.Seconds()))
	var failures sync.Map
	var r0, r1 unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &r0); err != nil {
		return err
	}
	tick := time.NewTicker(burst)
	defer tick.Stop()
	next := 0
	for range bursts {
		<-tick.C
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func(first int) {
				defer wg.Done()
				for i := first; i < perBurst; i += workers {
					p := (next + i) % peers
					if err := connect([4]byte{127, 1, byte(p / 250), byte(p%250 + 1)}, port); err != nil {
						failures.Store(err.Error(), true)
					}
				}
			}(w)
		}
		wg.Wait()
		next += perBurst
	}
	if err := unix.Getrusage(unix.RUSAGE_SELF, &r1); err != nil {
		return err
	}
	failures.Range(func(k, _ any) bool { fmt.Fprintln(os.Stderr, "connect failed:", k); return true })
	cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
	n := bursts * perBurst
	fmt.Printf("%d connects/s in bursts of %d every %v: %.2f%% of a core, %.1f us CPU per connect\n",
		peers*perPeer, perBurst, burst, 100*cpu.Seconds()/float64(seconds), float64(cpu.Microseconds())/float64(n))
	return nil
}

func connect(ip [4]byte, port int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: ip, Port: port}); err != nil && !errors.Is(err, syscall.EINTR) {
		return err
	}
	return unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
}

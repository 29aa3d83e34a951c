//go:build linux

// Command burst measures what the agent's own scheduling adds to its connect
// figures when many peers' runs are due together over a path with a real
// delay. The agent binary (bin/xosprobe agent, static mode) probes -peers
// peers from one network namespace; one `xosprobe serve` in another answers
// for all of them behind an NFQUEUE delayer (test/nfqueue) that holds the
// SYNs toward it by 0 or -hold, in alternating windows. The agent reports to
// a collector in this process. For each agent setting (-settings: environment
// and flags, one agent run each) it prints, for the tcp and http checks'
// connect phase, the change of the median from hold 0 to -hold minus the
// change of the delayer's median hold (the error the e2e asserts within
// 0.3 ms), and the same for the 90th percentile: what a run waiting for a
// thread or a CPU after its handshake adds on top of the path.
//
// The delayer counts a hold from the moment it reads the packet, so a SYN of
// a burst that waited in the queue before that read adds to the figure and
// not to the hold: compare the settings of one run with each other rather
// than each error with zero. Root.
//
//	go run ./bench/burst
//	go run ./bench/burst -peers 300 -settings 'GOMAXPROCS=1;GOMAXPROCS=2'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xosprobe/xosprobe/aggregator/wire"
	"github.com/xosprobe/xosprobe/test/nfqueue"
)

const (
	serverIP = nfqueue.PairServerIP
	basePort = 9440 // the serve's four ports: 9440-9443
)

func main() {
	bin := flag.String("bin", "bin/xosprobe", "the Linux build to run as agent and responder")
	peers := flag.Int("peers", 100, "peers the agent probes (all answered by the one responder)")
	hold := flag.Duration("hold", 2*time.Millisecond, "the delayer's hold in the held windows")
	window := flag.Duration("window", 8*time.Second, "length of each window")
	rounds := flag.Int("rounds", 3, "pairs of windows (hold 0, then -hold) per setting")
	settings := flag.String("settings", "GOMAXPROCS=2;GOMAXPROCS=1;GOMAXPROCS=2 --coalesce=0",
		"agent settings to compare, ';'-separated; each: VAR=value environment and --flag=value agent flags, space-separated")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "burst: needs root (network namespaces, iptables, NFQUEUE)")
		os.Exit(1)
	}
	if err := run(*bin, *peers, *hold, *window, *rounds, strings.Split(*settings, ";")); err != nil {
		fmt.Fprintln(os.Stderr, "burst:", err)
		os.Exit(1)
	}
}

// collector keeps the results the agent reports.
type collector struct {
	mu      sync.Mutex
	results []wire.Result
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b, err := wire.Decode(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.results = append(c.results, b.Results...)
	c.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// take returns the results of runs started at or after since and forgets all.
func (c *collector) take(since time.Time) []wire.Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []wire.Result
	for _, r := range c.results {
		if !r.Start.Before(since) {
			out = append(out, r)
		}
	}
	c.results = nil
	return out
}

// checks are those whose connect phase is compared with the holds.
var checks = []string{"tcp", "http"}

// sample is one hold's figures, pooled over its windows.
type sample struct {
	connect    map[string][]time.Duration // by check
	holds      []time.Duration
	runs, errs int
}

func run(bin string, peers int, hold, window time.Duration, rounds int, settings []string) error {
	pair, err := nfqueue.NewPair(fmt.Sprint("burst", os.Getpid()%100000))
	defer pair.Delete()
	if err != nil {
		return err
	}
	ports := fmt.Sprintf("%d:%d", basePort, basePort+3)
	syn, _ := nfqueue.HoldRules(nfqueue.PairClientIP, ports, 7, 8) // only SYNs are held
	if err := nfqueue.InputRule(context.Background(), pair.Server, "-A", syn); err != nil {
		return err
	}
	delayer, err := nfqueue.Start(pair.Server, 7, 0)
	if err != nil {
		return err
	}
	defer delayer.Close()

	addr := func(i int) string { return fmt.Sprintf("%s:%d", serverIP, basePort+i) }
	srv := exec.Command("ip", "netns", "exec", pair.Server, bin, "serve", "--node", "peers",
		"--http-addr", addr(0), "--tcp-addr", addr(1), "--allow-addr", addr(2), "--deny-addr", addr(3))
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()

	var ln net.Listener
	if err := nfqueue.InNetns(pair.Client, func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		return err
	}
	col := &collector{}
	go func() { _ = http.Serve(ln, col) }()
	defer ln.Close()

	dir, err := os.MkdirTemp("", "burst")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var list strings.Builder
	for i := range peers {
		fmt.Fprintf(&list, "peer-%d=windows@%s:%d\n", i, serverIP, basePort)
	}
	peersFile := dir + "/peers"
	if err := os.WriteFile(peersFile, []byte(list.String()), 0o644); err != nil {
		return err
	}

	fmt.Printf("%d peers, 4 checks each at a 1 s interval; hold %v; %d x %v windows per hold\n", peers, hold, rounds, window)
	fmt.Printf("%-34s %-16s %9s %9s %9s %9s %6s\n", "setting", "phase", "p50@0-us", "p50-err", "p90@0-us", "p90-err", "failed")
	for _, s := range settings {
		res, err := measure(pair, bin, peersFile, ln.Addr().String(), strings.Fields(s), peers, hold, window, rounds, col, delayer)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		h0, hD := res[0].holds, res[1].holds
		for _, c := range checks {
			at0, atD := res[0].connect[c], res[1].connect[c]
			if len(at0) == 0 || len(atD) == 0 || len(h0) == 0 || len(hD) == 0 {
				return fmt.Errorf("%s: no %s connects or no holds recorded", s, c)
			}
			errAt := func(q float64) float64 {
				return float64((nfqueue.Quantile(atD, q)-nfqueue.Quantile(at0, q))-(nfqueue.Quantile(hD, q)-nfqueue.Quantile(h0, q))) / 1e3
			}
			fmt.Printf("%-34s %-16s %9.0f %+9.0f %9.0f %+9.0f %6s\n", s, c+"/connect",
				float64(nfqueue.Quantile(at0, 0.5))/1e3, errAt(0.5), float64(nfqueue.Quantile(at0, 0.9))/1e3, errAt(0.9),
				fmt.Sprintf("%d/%d", res[0].errs+res[1].errs, res[0].runs+res[1].runs))
		}
	}
	return nil
}

// measure runs the agent with one setting and returns the pooled samples at
// hold 0 and at hold.
func measure(pair nfqueue.Pair, bin, peersFile, collector string, setting []string, peers int, hold, window time.Duration,
	rounds int, col *collector, delayer *nfqueue.Delayer) ([2]sample, error) {
	var env, flags []string
	for _, f := range setting {
		if strings.HasPrefix(f, "--") {
			flags = append(flags, f)
		} else {
			env = append(env, f)
		}
	}
	args := slices.Concat([]string{"netns", "exec", pair.Client, bin, "agent", "--node", "self", "--os", "linux",
		"--listen-ip", "127.0.0.1", "--port-base", "20440", "--admin-addr", "127.0.0.1:20445",
		"--peers-file", peersFile, "--k-cross", fmt.Sprint(peers), "--max-peers", fmt.Sprint(peers + 3),
		"--interval", "1s", "--timeout", "900ms", "--deny-timeout", "200ms", "--shutdown-delay", "0s",
		"--log-level", "error", "--aggregator-url", "http://" + collector}, flags)
	agent := exec.Command("ip", args...)
	agent.Env = append(os.Environ(), env...)
	agent.Stderr = os.Stderr
	if err := agent.Start(); err != nil {
		return [2]sample{}, err
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = agent.Wait(); close(exited) }()
	defer func() { _ = agent.Process.Kill(); <-exited }()

	var out [2]sample
	for i := range out {
		out[i].connect = map[string][]time.Duration{}
	}
	for range rounds {
		for i, h := range []time.Duration{0, hold} {
			delayer.SetHold(h)
			select { // runs started under the last hold end within the timeout
			case <-exited:
				return out, fmt.Errorf("agent exited: %w", waitErr)
			case <-time.After(1500 * time.Millisecond):
			}
			since := time.Now()
			col.take(since) // forget the last window's runs
			delayer.TakeHolds()
			time.Sleep(window)
			out[i].holds = append(out[i].holds, delayer.TakeHolds()...)
			time.Sleep(3 * time.Second) // the last runs' reports arrive (flushed every 2 s)
			for _, r := range col.take(since) {
				if r.Start.After(since.Add(window)) || !slices.Contains(checks, r.Check) {
					continue
				}
				out[i].runs++
				if r.Outcome != "success" {
					out[i].errs++
					continue
				}
				for _, ph := range r.Phases {
					if ph.Name == "connect" {
						out[i].connect[r.Check] = append(out[i].connect[r.Check], ph.Duration)
					}
				}
			}
		}
	}
	if out[0].runs == 0 {
		return out, errors.New("the collector received no results")
	}
	return out, nil
}

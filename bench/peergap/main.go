//go:build linux

// Command peergap measures what a run toward a peer does to the next run
// toward it, as the e2e ground truth sees it: a Windows responder
// (bin/xosprobe.exe serve under Wine) in one network namespace, the prober in
// another, SYNs and the other packets into the responder held by NFQUEUE
// delayers (test/nfqueue). Each sample is a tcp run then, -gap later, an http
// run (-mode seq), or the http run alone (-mode http). Holds of 0, 2 and 5 ms
// alternate in rounds of 50 samples; for each hold it prints the medians and
// the ground-truth error: the change of a phase's median from hold 0 minus
// the change of the delayer's median hold (what the e2e asserts within
// 0.3 ms). Root; Wine; a built bin/xosprobe.exe.
//
//	go run ./bench/peergap -mode seq -gap 0
//	go run ./bench/peergap -mode seq -gap 5ms
//	go run ./bench/peergap -mode http
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/xosprobe/xosprobe/probe"
	"github.com/xosprobe/xosprobe/test/nfqueue"
)

const serverIP = nfqueue.PairServerIP

func main() {
	mode := flag.String("mode", "seq", "seq: a tcp run, then the http run; http: the http run alone")
	gap := flag.Duration("gap", 0, "time between the end of the tcp run and the start of the http run")
	samples := flag.Int("samples", 500, "samples per hold (rounded down to rounds of 50)")
	pace := flag.Duration("pace", 100*time.Millisecond, "mean time between samples (uniform over 0.5-1.5x)")
	exe := flag.String("exe", "bin/xosprobe.exe", "the Windows build to serve under Wine")
	flag.Parse()
	if err := run(*mode, *gap, *samples/50, *pace, *exe); err != nil {
		fmt.Fprintln(os.Stderr, "peergap:", err)
		os.Exit(1)
	}
}

// phases holds one hold's samples.
type phases struct{ tcp, httpConnect, firstByte, holdSYN, holdData []time.Duration }

func run(mode string, gap time.Duration, rounds int, pace time.Duration, exe string) error {
	if mode != "seq" && mode != "http" {
		return fmt.Errorf("-mode %q: want seq or http", mode)
	}
	pair, stop, err := setup(exe)
	defer stop()
	if err != nil {
		return err
	}
	syn, err := nfqueue.Start(pair.Server, 7, 0)
	if err != nil {
		return err
	}
	defer syn.Close()
	data, err := nfqueue.Start(pair.Server, 8, 0)
	if err != nil {
		return err
	}
	defer data.Close()

	p := probe.New()
	ctx := context.Background()
	holds := []time.Duration{0, 2 * time.Millisecond, 5 * time.Millisecond}
	res := map[time.Duration]*phases{}
	for range rounds {
		for _, hold := range holds {
			r := res[hold]
			if r == nil {
				r = &phases{}
				res[hold] = r
			}
			syn.SetHold(hold)
			data.SetHold(hold)
			time.Sleep(50 * time.Millisecond) // the last round's packets leave
			syn.TakeHolds()
			data.TakeHolds()
			for range 50 {
				time.Sleep(pace/2 + rand.N(pace))
				err := nfqueue.InNetns(pair.Client, func() error {
					if mode == "seq" {
						t := p.TCP(ctx, probe.Target{Addr: serverIP + ":9441"})
						if !t.Succeeded() {
							return fmt.Errorf("tcp: %s", t.Outcome)
						}
						r.tcp = append(r.tcp, phase(t, probe.PhaseConnect))
						time.Sleep(gap)
					}
					h := p.HTTP(ctx, probe.Target{Addr: serverIP + ":9440"})
					if !h.Succeeded() {
						return fmt.Errorf("http: %s", h.Outcome)
					}
					r.httpConnect = append(r.httpConnect, phase(h, probe.PhaseConnect))
					r.firstByte = append(r.firstByte, phase(h, probe.PhaseFirstByte))
					return nil
				})
				if err != nil {
					return err
				}
			}
			time.Sleep(20 * time.Millisecond)
			r.holdSYN = append(r.holdSYN, syn.TakeHolds()...)
			r.holdData = append(r.holdData, data.TakeHolds()...)
		}
	}
	base := res[0]
	us := func(d time.Duration) string { return fmt.Sprintf("%.0fus", float64(d)/1e3) }
	fmt.Printf("mode=%s gap=%v, %d samples per hold; error = phase median change - median hold change\n", mode, gap, rounds*50)
	fmt.Printf("%-6s %10s %10s %10s %10s %10s %11s %11s %11s\n", "hold", "tcp", "http-conn", "first-byte", "hold-syn", "hold-data", "err-tcp", "err-http-c", "err-fb")
	for _, hold := range holds {
		r := res[hold]
		errOf := func(ph, h, ph0, h0 []time.Duration) string {
			if len(ph) == 0 {
				return "-"
			}
			return us((nfqueue.Median(ph) - nfqueue.Median(ph0)) - (nfqueue.Median(h) - nfqueue.Median(h0)))
		}
		fmt.Printf("%-6v %10s %10s %10s %10s %10s %11s %11s %11s\n", hold, us(nfqueue.Median(r.tcp)), us(nfqueue.Median(r.httpConnect)), us(nfqueue.Median(r.firstByte)),
			us(nfqueue.Median(r.holdSYN)), us(nfqueue.Median(r.holdData)),
			errOf(r.tcp, r.holdSYN, base.tcp, base.holdSYN), errOf(r.httpConnect, r.holdSYN, base.httpConnect, base.holdSYN),
			errOf(r.firstByte, r.holdData, base.firstByte, base.holdData))
	}
	return nil
}

func phase(r probe.Result, ph probe.Phase) time.Duration {
	d, _ := r.Phase(ph)
	return d
}

// setup makes the two namespaces, starts the responder under Wine with a
// prefix of its own in the server namespace, and queues the prober's packets
// to its ports: SYNs to queue 7, the rest to queue 8. stop undoes it all.
func setup(exe string) (pair nfqueue.Pair, stop func(), err error) {
	tmp, err := os.MkdirTemp("", "peergap-")
	if err != nil {
		return pair, func() {}, err
	}
	pair, err = nfqueue.NewPair("peergap")
	stop = func() {
		pair.Delete() // the responder and its wineserver with it
		_ = os.RemoveAll(tmp)
	}
	if err != nil {
		return pair, stop, err
	}
	home, _ := os.UserHomeDir()
	prefix := filepath.Join(tmp, "wine")
	template := os.Getenv("WINEPREFIX")
	if template == "" {
		template = filepath.Join(home, ".wine")
	}
	if out, err := exec.Command("cp", "-a", template, prefix).CombinedOutput(); err != nil {
		return pair, stop, fmt.Errorf("copying the Wine prefix: %w: %s", err, out)
	}
	syn, rest := nfqueue.HoldRules(nfqueue.PairClientIP, "9440:9443", 7, 8)
	for _, spec := range [][]string{syn, rest} {
		if err := nfqueue.InputRule(context.Background(), pair.Server, "-A", spec); err != nil {
			return pair, stop, err
		}
	}
	srv := exec.Command("ip", "netns", "exec", pair.Server, "wine", exe, "serve", "--http-addr", serverIP+":9440",
		"--tcp-addr", serverIP+":9441", "--allow-addr", serverIP+":9442", "--deny-addr", serverIP+":9443")
	srv.Env = append(os.Environ(), "WINEPREFIX="+prefix, "TMPDIR="+tmp, "WINEDEBUG=-all")
	if err := srv.Start(); err != nil {
		return pair, stop, err
	}
	go func() { _ = srv.Wait() }()
	p := probe.New()
	for deadline := time.Now().Add(60 * time.Second); ; {
		var r probe.Result
		_ = nfqueue.InNetns(pair.Client, func() error {
			r = p.HTTP(context.Background(), probe.Target{Addr: serverIP + ":9440"})
			return nil
		})
		if r.Succeeded() {
			return pair, stop, nil
		}
		if time.Now().After(deadline) {
			return pair, stop, errors.New("the responder under Wine did not answer within 60s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

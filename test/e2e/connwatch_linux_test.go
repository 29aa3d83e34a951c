//go:build linux

package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xosprobe/xosprobe/test/nfqueue"
)

// connWatch notes when each TCP connection toward an address and port range
// first appears in a network namespace's conntrack table: one entry per
// connection, so a retransmitted SYN is not counted again (an iptables
// counter would count it). Its resolution is the polling period.
type connWatch struct {
	netns, dst     string
	portLo, portHi int
	seen           map[string]time.Time // "src:sport>dport" -> first seen
	baseline       bool                 // the first poll only records what exists
}

type newConn struct {
	tuple string
	seen  time.Time
}

func newConnWatch(netns, dst string, portLo, portHi int) *connWatch {
	return &connWatch{netns: netns, dst: dst, portLo: portLo, portHi: portHi, seen: map[string]time.Time{}, baseline: true}
}

// poll reads the table and returns how many connections are new since the
// first poll.
func (w *connWatch) poll() (int, error) {
	var table []byte
	err := nfqueue.InNetns(w.netns, func() (err error) {
		// thread-self: /proc/self/net would show the main thread's namespace.
		table, err = os.ReadFile("/proc/thread-self/net/nf_conntrack")
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("conntrack of %s: %w", w.netns, err)
	}
	now := time.Now()
	for _, line := range strings.Split(string(table), "\n") {
		// "ipv4 2 tcp 6 117 SYN_SENT src=A dst=B sport=P dport=Q [UNREPLIED] src=B ..."
		f := map[string]string{}
		for _, kv := range strings.Fields(line) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				if _, dup := f[k]; !dup { // the original direction comes first
					f[k] = v
				}
			}
		}
		port, _ := strconv.Atoi(f["dport"])
		if !strings.Contains(line, " tcp ") || f["dst"] != w.dst || port < w.portLo || port > w.portHi {
			continue
		}
		key := f["src"] + ":" + f["sport"] + ">" + f["dport"]
		if _, ok := w.seen[key]; !ok {
			if w.baseline {
				w.seen[key] = time.Time{}
			} else {
				w.seen[key] = now
			}
		}
	}
	w.baseline = false
	return len(w.since(time.Time{}.Add(1))), nil
}

// since returns the connections first seen after t.
func (w *connWatch) since(t time.Time) []newConn {
	var out []newConn
	for k, at := range w.seen {
		if !at.IsZero() && at.After(t) {
			out = append(out, newConn{k, at})
		}
	}
	return out
}

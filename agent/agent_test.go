package agent

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/xosprobe/xosprobe/agent/peers"
	"github.com/xosprobe/xosprobe/agent/reporter"
	"github.com/xosprobe/xosprobe/agent/scheduler"
	"github.com/xosprobe/xosprobe/aggregator/wire"
	"github.com/xosprobe/xosprobe/probe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// freeBase finds six consecutive free loopback ports below the ephemeral
// range, where no client socket's TIME_WAIT can block a listener.
func freeBase(t *testing.T) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(12000)
		ok := true
		for i := 0; i < 6 && ok; i++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+i)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

type batches struct {
	mu sync.Mutex
	b  []*wire.Batch
}

func (b *batches) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(r.Body)
	batch, err := wire.Decode(data)
	if err != nil || r.Header.Get("Authorization") != "Bearer s3cret" {
		http.Error(w, "bad", http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	b.b = append(b.b, batch)
	b.mu.Unlock()
}

// results returns the reported runs of check from srcOS agents started after since.
func (b *batches) results(srcOS, check string, since time.Time) []wire.Result {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []wire.Result
	for _, batch := range b.b {
		if batch.Agent.OS != srcOS {
			continue
		}
		for _, r := range batch.Results {
			if r.Check == check && r.Start.After(since) {
				out = append(out, r)
			}
		}
	}
	return out
}

func testConfig(node, osName string, base int, aggURL string) Config {
	return Config{
		Self:      probe.Endpoint{Pod: node + "-pod", Node: node, OS: osName},
		ListenIP:  "127.0.0.1",
		Ports:     PortsFromBase(base),
		AdminAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(base+5)),
		Peers:     peers.DefaultConfig(),
		Scheduler: scheduler.Config{Interval: 50 * time.Millisecond, Jitter: 0.2, Timeout: time.Second, MaxInFlight: 8},
		Reporter: reporter.Config{URL: aggURL, FlushInterval: 50 * time.Millisecond,
			Token: func() (string, error) { return "s3cret", nil }},
		DenyTimeout: 200 * time.Millisecond,
		Version:     "test",
	}
}

// Two agents of different OS probe each other on loopback and report with
// the right OS labels; the deny port is open here, so netpol-deny must report
// policy_not_enforced.
func TestTwoAgentsProbeEachOtherAndReport(t *testing.T) {
	agg := &batches{}
	srv := httptest.NewServer(agg)
	defer srv.Close()
	lb, wb := freeBase(t), 0
	for wb == 0 || (wb >= lb-6 && wb <= lb+6) {
		wb = freeBase(t)
	}
	linuxPeer := PeerInfo{Node: "lin-1", OS: "linux", Pod: "lin-1-pod", IP: "127.0.0.1", Ports: PortsFromBase(lb)}
	winPeer := PeerInfo{Node: "win-1", OS: "windows", Pod: "win-1-pod", IP: "127.0.0.1", Ports: PortsFromBase(wb)}
	svc := []ServiceInfo{{OS: "linux", Name: "xosprobe-linux", FQDN: "localhost", ClusterIP: "127.0.0.1", Port: lb}}
	view := View{Peers: []PeerInfo{linuxPeer, winPeer}, Services: svc}
	log := slog.New(slog.DiscardHandler)

	lin, err := New(testConfig("lin-1", "linux", lb, srv.URL), StaticSource{V: view}, nil, log)
	require.NoError(t, err)
	win, err := New(testConfig("win-1", "windows", wb, srv.URL), StaticSource{V: view}, nil, log)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, a := range []*Agent{lin, win} {
		wg.Add(1)
		go func() { defer wg.Done(); assert.NoError(t, a.Run(ctx)) }()
	}
	defer func() { cancel(); wg.Wait() }()

	// The agents start together, so one's first runs may come before the
	// other listens (under Wine, 2 runs in 300): judge the runs started after
	// both listen.
	require.Eventually(t, func() bool {
		for _, p := range []PeerInfo{linuxPeer, winPeer} {
			for _, port := range []int{p.Ports.HTTP, p.Ports.TCP, p.Ports.Allow, p.Ports.Deny} {
				c, err := net.Dial("tcp", net.JoinHostPort(p.IP, strconv.Itoa(port)))
				if err != nil {
					return false
				}
				c.Close()
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "the agents never listened")
	listening := time.Now()

	for _, src := range []string{"linux", "windows"} {
		for _, check := range []string{"tcp", "http", "netpol-allow", "netpol-deny", "dns", "service"} {
			require.Eventually(t, func() bool { return len(agg.results(src, check, listening)) > 0 }, 10*time.Second, 20*time.Millisecond,
				"%s agent never reported %s", src, check)
		}
	}
	for _, r := range agg.results("windows", "tcp", listening) {
		assert.Equal(t, "linux", r.DstOS)
		assert.Equal(t, "lin-1", r.DstNode)
		assert.Equal(t, "success", r.Outcome)
	}
	for _, r := range agg.results("linux", "netpol-deny", listening) {
		assert.Equal(t, "policy_not_enforced", r.Outcome)
		assert.Equal(t, "deny", r.Expected)
		assert.Equal(t, "allow", r.Observed)
	}

	m := win.Metrics()
	assert.Positive(t, testutil.ToFloat64(m.Peers.WithLabelValues("linux", "cross")))
	resp, err := http.Get("http://" + win.cfg.AdminAddr + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), `xosprobe_probe_total{check="tcp",dst_os="linux",result="success",src_os="windows"}`)
	assert.Contains(t, string(body), `xosprobe_netpol_mismatch_total{check="netpol-deny",dst_os="linux",expected="deny",observed="allow",src_os="windows"}`)
	assert.Contains(t, string(body), `xosprobe_clock_resolution_seconds{clock="time.Now",os="windows"}`)
	assert.Contains(t, string(body), `xosprobe_probe_duration_seconds_bucket{check="tcp",dst_os="linux",phase="connect",src_os="windows"`)
	assert.NotContains(t, string(body), "lin-1", "no per-peer labels")
	// No enforcer on loopback: the deny port answers, so policy reads as not enforced.
	assert.Contains(t, string(body), `xosprobe_netpol_enforced_ratio{dst_os="linux",src_os="windows"} 0`)

	ready, err := http.Get("http://" + win.cfg.AdminAddr + "/readyz")
	require.NoError(t, err)
	ready.Body.Close()
	assert.Equal(t, http.StatusOK, ready.StatusCode)
}

func TestConfigErrors(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	cfg := testConfig("n", "plan9", 1, "")
	_, err := New(cfg, StaticSource{}, nil, log)
	require.Error(t, err)
	cfg = testConfig("n", "linux", 1, "")
	cfg.Scheduler.Interval = 0
	_, err = New(cfg, StaticSource{}, nil, log)
	require.Error(t, err)
}

func TestParsePeer(t *testing.T) {
	p, err := ParsePeer("win-1=windows@10.0.0.5:19440")
	require.NoError(t, err)
	assert.Equal(t, PeerInfo{Node: "win-1", OS: "windows", Pod: "win-1", IP: "10.0.0.5", Ports: PortsFromBase(19440)}, p)
	p, err = ParsePeer("lin=linux@10.0.0.6")
	require.NoError(t, err)
	assert.Equal(t, DefaultPorts, p.Ports)
	for _, bad := range []string{"", "x", "n=linux", "n=mac@10.0.0.1", "n=linux@host", "n=linux@10.0.0.1:99999", "=linux@10.0.0.1"} {
		_, err := ParsePeer(bad)
		assert.Error(t, err, bad)
	}
}

func TestParseService(t *testing.T) {
	s, err := ParseService("windows=10.96.0.20:9440,xosprobe-windows.xosprobe.svc.cluster.local")
	require.NoError(t, err)
	assert.Equal(t, ServiceInfo{OS: "windows", Name: "xosprobe-windows", FQDN: "xosprobe-windows.xosprobe.svc.cluster.local", ClusterIP: "10.96.0.20", Port: 9440}, s)
	for _, bad := range []string{"", "linux", "mac=1.2.3.4:80", "linux=1.2.3.4", "linux=1.2.3.4:0"} {
		_, err := ParseService(bad)
		assert.Error(t, err, bad)
	}
}

func TestNetpolEnforcedRatio(t *testing.T) {
	a, err := New(testConfig("lin-1", "linux", 1, ""), StaticSource{}, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	gauge := func(dstOS string) float64 {
		return testutil.ToFloat64(a.metrics.NetpolEnforced.WithLabelValues("linux", dstOS))
	}
	deny := func(key, dstOS string, observed probe.Verdict) {
		a.noteVerdict(key, &probe.Result{Check: probe.CheckNetpolDeny, Dst: probe.Endpoint{OS: dstOS},
			Expected: probe.VerdictDeny, Observed: observed})
	}
	// The jobs the last recomputation made; runs of other keys are ignored.
	a.why = map[string]string{"win-1/netpol-deny": "", "win-2/netpol-deny": "", "lin-2/netpol-deny": ""}
	deny("gone-1/netpol-deny", "windows", probe.VerdictAllow)
	deny("win-1/netpol-deny", "windows", probe.VerdictDeny)
	deny("win-2/netpol-deny", "windows", probe.VerdictAllow)
	deny("lin-2/netpol-deny", "linux", probe.VerdictDeny)
	assert.InDelta(t, 0.5, gauge("windows"), 1e-9)
	assert.InDelta(t, 1.0, gauge("linux"), 1e-9)
	series := a.metrics.NetpolEnforced.WithLabelValues("linux", "linux")
	deny("lin-2/netpol-deny", "linux", probe.VerdictDeny) // the only linux job runs again
	assert.Same(t, series, a.metrics.NetpolEnforced.WithLabelValues("linux", "linux"),
		"a job's next run updates its series in place: a scrape never finds it missing")
	deny("win-2/netpol-deny", "windows", probe.VerdictDeny) // win-2 starts enforcing
	assert.InDelta(t, 1.0, gauge("windows"), 1e-9)

	// Peers that leave stop counting.
	a.mu.Lock()
	a.setDenyState("win-1/netpol-deny", denyState{})
	a.setDenyState("win-2/netpol-deny", denyState{})
	a.mu.Unlock()
	assert.Equal(t, 1, testutil.CollectAndCount(a.metrics.NetpolEnforced), "only the linux series is left")
}

// A peer's four checks share the peer as their scheduling group, so the
// scheduler never sends two of them at once; the per-OS Service steps go
// through the VIP and the resolver and stay ungrouped.
func TestJobsTowardOnePeerShareItsGroup(t *testing.T) {
	cfg := testConfig("self", "linux", 1, "http://127.0.0.1:1")
	view := View{Peers: []PeerInfo{
		{Node: "lin-2", OS: "linux", Pod: "p2", IP: "10.0.0.2", Ports: PortsFromBase(9440)},
		{Node: "win-1", OS: "windows", Pod: "p3", IP: "10.0.0.3", Ports: PortsFromBase(9440)},
	}, Services: []ServiceInfo{{OS: "windows", Name: "xosprobe-windows", FQDN: "xosprobe-windows.xosprobe.svc.cluster.local", ClusterIP: "10.96.0.10", Port: 80}}}
	a, err := New(cfg, StaticSource{V: view}, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	groups := map[string][]probe.Check{}
	for _, j := range a.jobs(view) {
		if j.Peer != "" {
			assert.Equal(t, j.Peer, j.Target.Dst.Node, j.Key)
		}
		groups[j.Peer] = append(groups[j.Peer], j.Check)
		// A netpol run is its bounded connect: the run's deadline is that bound.
		if j.Check == probe.CheckNetpolAllow || j.Check == probe.CheckNetpolDeny {
			assert.Equal(t, cfg.DenyTimeout, j.Timeout, j.Key)
		} else {
			assert.Zero(t, j.Timeout, j.Key)
		}
	}
	peerChecks := []probe.Check{probe.CheckTCP, probe.CheckHTTP, probe.CheckNetpolAllow, probe.CheckNetpolDeny}
	assert.ElementsMatch(t, peerChecks, groups["lin-2"])
	assert.ElementsMatch(t, peerChecks, groups["win-1"])
	assert.ElementsMatch(t, []probe.Check{probe.CheckDNS, probe.CheckService}, groups[""])
}

package main

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/xosprobe/xosprobe/agent"
	"github.com/xosprobe/xosprobe/agent/peers"
	"github.com/xosprobe/xosprobe/agent/reporter"
	"github.com/xosprobe/xosprobe/agent/scheduler"
	"github.com/xosprobe/xosprobe/probe"
)

// agentFlags is everything `xosprobe agent` reads from its command line and environment.
type agentFlags struct {
	node, pod, namespace, osName string
	listenIP, adminAddr          string
	portBase                     int
	ports                        agent.Ports
	interval, timeout            time.Duration
	denyTimeout, shutdownDelay   time.Duration
	policyGrace, warmup          time.Duration
	jitter                       float64
	coalesce                     time.Duration
	maxInFlight                  int64
	peersCfg                     peers.Config
	dnsServer                    string
	aggregatorURL                string
	tokenFile                    string
	staticPeers, staticServices  []string
	peersFile                    string
	checkConfig                  bool
	releaseStartupPages          bool
	kernelRTT                    string
	logging                      logFlags
	kube                         kubeFlags
}

func newAgentCmd() *cobra.Command {
	f := agentFlags{ports: agent.DefaultPorts, peersCfg: peers.DefaultConfig()}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent: serve the probe ports, probe selected peers, export metrics, report to the aggregator",
		Long: `Runs on every node (a DaemonSet per OS). Without --peer/--peers-file it discovers
peers through the Kubernetes API; with them it runs in static mode on any machine.`,
		Example: `  # static mode on loopback: a Linux agent probing a Windows one
  xosprobe agent --node lin-1 --listen-ip 127.0.0.1 --port-base 19440 --admin-addr 127.0.0.1:19445 \
      --peer win-1=windows@127.0.0.1:19450 --aggregator-url http://127.0.0.1:9446 --token-file token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := f.logging.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cfg, static, err := f.config()
			if err != nil {
				return err
			}
			// The API is asked only in Kubernetes mode, and not just to validate flags.
			useAPI := static == nil && !f.checkConfig
			if cfg.DNSServer, err = clusterDNSServer(cmd.Context(), f.dnsServer, &f.kube, useAPI, log); err != nil {
				return err
			}
			if static != nil {
				a, err := agent.New(cfg, *static, nil, log)
				if err != nil {
					return err
				}
				if f.checkConfig {
					fmt.Fprintf(cmd.OutOrStdout(), "configuration ok: static mode, node %s (%s), %d peers, interval %s, aggregator %q\n",
						cfg.Self.Node, cfg.Self.OS, len(static.V.Peers), cfg.Scheduler.Interval, cfg.Reporter.URL)
					return nil
				}
				return a.Run(cmd.Context())
			}
			return runKubeAgent(cmd, cfg, &f, log)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.node, "node", os.Getenv("NODE_NAME"), "this node's name (downward API: spec.nodeName) [$NODE_NAME]")
	fl.StringVar(&f.pod, "pod", os.Getenv("POD_NAME"), "this pod's name [$POD_NAME]")
	fl.StringVar(&f.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "this pod's namespace [$POD_NAMESPACE]")
	fl.StringVar(&f.osName, "os", runtime.GOOS, "this node's OS label value; only tests override it")
	fl.StringVar(&f.listenIP, "listen-ip", "", "address the probe ports listen on (default all)")
	fl.IntVar(&f.portBase, "port-base", 0, "lay the probe ports out from here: http, tcp, allow, deny (overrides the four port flags)")
	fl.IntVar(&f.ports.HTTP, "http-port", f.ports.HTTP, "health HTTP port")
	fl.IntVar(&f.ports.TCP, "tcp-port", f.ports.TCP, "TCP connect-check port")
	fl.IntVar(&f.ports.Allow, "allow-port", f.ports.Allow, "port NetworkPolicy allows between agents")
	fl.IntVar(&f.ports.Deny, "deny-port", f.ports.Deny, "port NetworkPolicy denies between agents")
	fl.StringVar(&f.adminAddr, "admin-addr", ":9445", "listen address of /metrics, /healthz and /readyz")
	fl.DurationVar(&f.interval, "interval", 10*time.Second, "time between runs of each (peer, check)")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Second, "deadline of one run")
	fl.DurationVar(&f.denyTimeout, "deny-timeout", probe.DefaultDenyTimeout, "how long a NetworkPolicy check waits before calling a port blocked")
	// Windows HNS programs a new policy's ACLs on each endpoint a minute or
	// more after the object appears; Linux CNIs take seconds.
	fl.DurationVar(&f.policyGrace, "policy-grace", 2*time.Minute, "after a NetworkPolicy expectation changes (policy, labels, new peer), hold its mismatches this long while the network applies it (0: none)")
	fl.DurationVar(&f.warmup, "warmup", 2*time.Minute, "hold the failures toward a new peer (all of them at start) until one run toward it succeeds, at most this long (0: none)")
	fl.StringVar(&f.kernelRTT, "kernel-rtt", string(agent.KernelRTTAuto), "kernel RTT source: auto (the eBPF collector when it loads, else tcp_info), ebpf (required; Linux, CAP_BPF+CAP_NET_ADMIN), tcp_info (each socket: TCP_INFO, SIO_TCP_INFO on Windows)")
	fl.Float64Var(&f.jitter, "jitter", 0.2, "spread of the interval: each wait is interval × (1 ± jitter/2)")
	fl.Int64Var(&f.maxInFlight, "max-in-flight", 64, "probe runs in flight at once")
	fl.DurationVar(&f.coalesce, "coalesce", scheduler.DefaultCoalesce, "start runs due within this window together, so they share one wake-up (at most interval/4; 0: each run exactly when due)")
	fl.IntVar(&f.peersCfg.SameOS, "k-same", f.peersCfg.SameOS, "peers of this node's OS to probe")
	fl.IntVar(&f.peersCfg.CrossOS, "k-cross", f.peersCfg.CrossOS, "peers of the other OS to probe")
	fl.IntVar(&f.peersCfg.MinCrossProbers, "min-cross-probers", f.peersCfg.MinCrossProbers, "agents of the other OS that must probe every node")
	fl.IntVar(&f.peersCfg.MaxPeers, "max-peers", f.peersCfg.MaxPeers, "cap on peers per agent")
	fl.StringVar(&f.dnsServer, "dns-server", "", "cluster DNS HOST:PORT for the dns step's direct query (default: the pod adapter's DNS server on Windows, the first nameserver of /etc/resolv.conf on Linux, else the --dns-service ClusterIP)")
	fl.StringVar(&f.aggregatorURL, "aggregator-url", "", "aggregator base URL; empty: metrics only")
	fl.StringVar(&f.tokenFile, "token-file", "", "bearer token file for the aggregator (the projected ServiceAccount token, or a shared token in static mode); re-read on every send")
	fl.StringArrayVar(&f.staticPeers, "peer", nil, "static peer NODE=OS@IP[:BASEPORT] (repeatable); enables static mode")
	fl.StringVar(&f.peersFile, "peers-file", "", "file of static peers, one NODE=OS@IP[:BASEPORT] per line; enables static mode")
	fl.StringArrayVar(&f.staticServices, "service", nil, "static probe Service OS=VIP:PORT[,FQDN] (repeatable)")
	fl.DurationVar(&f.shutdownDelay, "shutdown-delay", 5*time.Second, "keep serving this long after readiness turns false")
	fl.BoolVar(&f.releaseStartupPages, "release-startup-pages", true, "once up, give back the executable's pages only start-up touched (Linux; some 18 MiB of RSS)")
	fl.BoolVar(&f.checkConfig, "check-config", false, "validate the configuration, print a summary and exit")
	f.logging.register(fl)
	f.kube.register(fl)
	return cmd
}

// config validates the flags into the agent's Config, and the static peer
// source when static mode was asked for (nil: discover through Kubernetes).
func (f *agentFlags) config() (agent.Config, *agent.StaticSource, error) {
	var errs []error
	if f.node == "" {
		errs = append(errs, errors.New("--node (or $NODE_NAME) is required"))
	}
	if f.pod == "" {
		f.pod = f.node
	}
	if f.portBase != 0 {
		if f.portBase < 1 || f.portBase > 65530 {
			errs = append(errs, fmt.Errorf("--port-base %d must be 1-65530", f.portBase))
		}
		f.ports = agent.PortsFromBase(f.portBase)
	}
	if f.interval <= 0 || f.timeout <= 0 || f.timeout > f.interval {
		errs = append(errs, fmt.Errorf("--timeout %s must be positive and at most --interval %s", f.timeout, f.interval))
	}
	if f.policyGrace < 0 {
		errs = append(errs, fmt.Errorf("--policy-grace %s must not be negative", f.policyGrace))
	}
	if f.warmup < 0 {
		errs = append(errs, fmt.Errorf("--warmup %s must not be negative", f.warmup))
	}
	if f.jitter < 0 || f.jitter > 1 {
		errs = append(errs, fmt.Errorf("--jitter %g must be within 0-1", f.jitter))
	}
	if f.dnsServer != "" { // empty: found at start, see clusterDNSServer
		if _, _, err := net.SplitHostPort(f.dnsServer); err != nil {
			errs = append(errs, fmt.Errorf("--dns-server %q: %w", f.dnsServer, err))
		}
	}
	if err := f.peersCfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if !slices.Contains(agent.KernelRTTModes, agent.KernelRTTMode(f.kernelRTT)) {
		errs = append(errs, fmt.Errorf("--kernel-rtt %q must be one of %v", f.kernelRTT, agent.KernelRTTModes))
	}
	cfg := agent.Config{
		Self:          probe.Endpoint{Pod: f.pod, Node: f.node, OS: f.osName},
		ListenIP:      f.listenIP,
		Ports:         f.ports,
		AdminAddr:     f.adminAddr,
		Peers:         f.peersCfg,
		Scheduler:     scheduler.Config{Interval: f.interval, Jitter: f.jitter, Timeout: f.timeout, MaxInFlight: f.maxInFlight, Coalesce: f.coalesce},
		HTTPPath:      probe.DefaultHTTPPath,
		DNSServer:     f.dnsServer,
		DenyTimeout:   f.denyTimeout,
		PolicyGrace:   f.policyGrace,
		Warmup:        f.warmup,
		KernelRTT:     agent.KernelRTTMode(f.kernelRTT),
		ShutdownDelay: f.shutdownDelay,
		Version:       version,

		ReleaseStartupPages: f.releaseStartupPages,
	}
	if f.aggregatorURL != "" {
		cfg.Reporter = reporter.DefaultConfig()
		cfg.Reporter.URL = strings.TrimSuffix(f.aggregatorURL, "/")
		if f.tokenFile != "" {
			path := f.tokenFile
			if _, err := os.ReadFile(path); err != nil {
				errs = append(errs, fmt.Errorf("--token-file: %w", err))
			}
			cfg.Reporter.Token = func() (string, error) {
				b, err := os.ReadFile(path)
				return strings.TrimSpace(string(b)), err
			}
		}
	}

	specs := append([]string{}, f.staticPeers...)
	if f.peersFile != "" {
		lines, err := readLines(f.peersFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--peers-file: %w", err))
		}
		specs = append(specs, lines...)
	}
	if len(specs) == 0 {
		if len(f.staticServices) > 0 {
			errs = append(errs, errors.New("--service is for static mode: give --peer or --peers-file too"))
		}
		if f.namespace == "" {
			errs = append(errs, errors.New("--namespace (or $POD_NAMESPACE) is required to discover peers through Kubernetes"))
		}
		if err := errors.Join(errs...); err != nil {
			return agent.Config{}, nil, err
		}
		return cfg, nil, nil
	}
	var view agent.View
	for _, s := range specs {
		p, err := agent.ParsePeer(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		view.Peers = append(view.Peers, p)
	}
	for _, s := range f.staticServices {
		svc, err := agent.ParseService(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		view.Services = append(view.Services, svc)
	}
	if err := errors.Join(errs...); err != nil {
		return agent.Config{}, nil, err
	}
	return cfg, &agent.StaticSource{V: view}, nil
}

// readLines returns the non-empty, non-comment lines of a file.
func readLines(path string) ([]string, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var out []string
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

// logFlags configure log/slog for the long-running commands.
type logFlags struct {
	level, format string
}

func (l *logFlags) register(fl interface {
	StringVar(p *string, name, value, usage string)
}) {
	fl.StringVar(&l.level, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&l.format, "log-format", "text", "text or json")
}

func (l *logFlags) logger(w interface{ Write([]byte) (int, error) }) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", l.level, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", l.format)
}

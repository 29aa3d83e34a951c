package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/xosprobe/xosprobe/aggregator"
	"github.com/xosprobe/xosprobe/aggregator/auth"
)

// aggregatorFlags is everything `xosprobe aggregator` reads from its command line.
type aggregatorFlags struct {
	listen string
	// Agent authentication: a shared token (static mode) or TokenReview.
	tokenFile, sharedToken string
	kubeconfig, audience   string
	serviceAccounts        []string
	reviewCacheTTL         time.Duration
	// Replication.
	peerURLs              []string
	peerDNS               string
	advertiseURL          string
	replicationSecretFile string
	replicaTokenFile      string
	replicaServiceAccount string
	// Computation.
	deltaWindow, baselineWindow, minRegression, computeInterval time.Duration
	maxBodyBytes                                                int64
	maxConnections                                              int
	shutdownDelay                                               time.Duration
	checkConfig                                                 bool
	logging                                                     logFlags
}

func newAggregatorCmd() *cobra.Command {
	f := aggregatorFlags{}
	cmd := &cobra.Command{
		Use:   "aggregator",
		Short: "Receive agents' results, compute the cross-OS latency delta and its regressions, serve /metrics and /matrix",
		Long: `Runs as a two-replica Deployment on Linux behind one Service. Agents POST result
batches to /api/v1/results; each replica forwards what it accepts to its peer, so both
export the same metrics (aggregate them with max by). Agents authenticate with their
projected ServiceAccount token, checked by TokenReview for --audience; without
Kubernetes, --token-file or --shared-token admit a static token instead.`,
		Example: `  # in a cluster (the Deployment's defaults), peers from the headless Service:
  xosprobe aggregator --agent-serviceaccount xosprobe:xosprobe-agent \
      --peer-dns xosprobe-aggregator-peers.xosprobe.svc.cluster.local:9446 \
      --replication-secret-file /var/run/secrets/xosprobe/replication
  # on one machine, static token:
  xosprobe aggregator --listen 127.0.0.1:9446 --token-file token --delta-window 1m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := f.logging.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cfg, err := f.config(log)
			if err != nil {
				return err
			}
			if f.checkConfig {
				_, err := aggregator.New(cfg)
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "configuration ok: listen %s, %s, delta window %s, baseline %s, peers %v, peer DNS %q\n",
						f.listen, f.authMode(), cfg.DeltaWindow, cfg.BaselineWindow, cfg.Peers, f.peerDNS)
				}
				return err
			}
			return runAggregator(cmd.Context(), f.listen, cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", ":9446", "listen address of the ingest API, /metrics, /matrix, /healthz and /readyz")
	fl.StringVar(&f.tokenFile, "token-file", "", "static mode: file of accepted agent tokens, one per line (instead of TokenReview)")
	fl.StringVar(&f.sharedToken, "shared-token", "", "static mode: the accepted agent token (visible in ps; prefer --token-file)")
	fl.StringVar(&f.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig for TokenReview; empty: in-cluster config")
	fl.StringVar(&f.audience, "audience", "xosprobe-aggregator", "audience the agents' projected ServiceAccount tokens are minted for")
	fl.StringArrayVar(&f.serviceAccounts, "agent-serviceaccount", []string{"xosprobe:xosprobe-agent"},
		"NAMESPACE:NAME of the agents' ServiceAccount; only it is admitted (repeatable)")
	fl.DurationVar(&f.reviewCacheTTL, "token-review-cache-ttl", time.Minute, "how long a TokenReview verdict for a token is reused")
	fl.StringSliceVar(&f.peerURLs, "peer-url", nil, "base URL of a peer replica (repeatable or comma-separated)")
	fl.StringVar(&f.peerDNS, "peer-dns", "", "HOST:PORT of a headless Service listing the replicas; resolved every 30s")
	fl.StringVar(&f.advertiseURL, "advertise-url", "", "this replica's URL as peers reach it (default http://$POD_IP:<listen port>)")
	fl.StringVar(&f.replicaTokenFile, "replica-token-file", "", "TokenReview mode: this replica's projected ServiceAccount token (audience --audience), presented to its peers; re-read per request")
	fl.StringVar(&f.replicaServiceAccount, "replica-serviceaccount", "xosprobe:xosprobe-aggregator", "TokenReview mode: NAMESPACE:NAME of the ServiceAccount peers must present")
	fl.StringVar(&f.replicationSecretFile, "replication-secret-file", "", "static mode: file with the secret replicas authenticate to each other with")
	fl.DurationVar(&f.deltaWindow, "delta-window", 5*time.Minute, "window of the exported quantiles and cross-OS deltas")
	fl.DurationVar(&f.baselineWindow, "baseline-window", time.Hour, "trailing window a delta is compared with for regressions")
	fl.DurationVar(&f.minRegression, "min-regression", 2*time.Millisecond, "smallest increase of a delta that counts as a regression")
	fl.DurationVar(&f.computeInterval, "compute-interval", 10*time.Second, "how often deltas and regressions are recomputed")
	fl.Int64Var(&f.maxBodyBytes, "max-batch-bytes", 8<<20, "largest batch accepted; larger ones get 413 and agents split them")
	fl.IntVar(&f.maxConnections, "max-connections", 10000, "connections served at once (every agent keeps one open: more than the cluster's nodes); more wait to be accepted")
	fl.DurationVar(&f.shutdownDelay, "shutdown-delay", 5*time.Second, "keep serving this long after readiness turns false")
	fl.BoolVar(&f.checkConfig, "check-config", false, "validate the configuration, print a summary and exit")
	f.logging.register(fl)
	return cmd
}

func (f *aggregatorFlags) authMode() string {
	if f.tokenFile != "" || f.sharedToken != "" {
		return "static token"
	}
	return fmt.Sprintf("TokenReview (audience %s, ServiceAccounts %v)", f.audience, f.serviceAccounts)
}

// config turns the flags into the aggregator's Config, reading secrets and
// building the TokenReview client.
func (f *aggregatorFlags) config(log *slog.Logger) (aggregator.Config, error) {
	var errs []error
	cfg := aggregator.Config{
		Peers: f.peerURLs, DeltaWindow: f.deltaWindow, BaselineWindow: f.baselineWindow, MinRegression: f.minRegression,
		ComputeInterval: f.computeInterval, MaxBodyBytes: f.maxBodyBytes, Log: log, Version: version,
		ShutdownDelay: f.shutdownDelay, MaxConnections: f.maxConnections,
	}
	if f.maxConnections < 1 {
		errs = append(errs, fmt.Errorf("--max-connections %d: want at least 1", f.maxConnections))
	}
	if f.shutdownDelay == 0 {
		cfg.ShutdownDelay = -1 // the library reads 0 as its default
	}
	for name, d := range map[string]time.Duration{"--delta-window": f.deltaWindow, "--baseline-window": f.baselineWindow,
		"--compute-interval": f.computeInterval, "--min-regression": f.minRegression} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s %s must be positive", name, d))
		}
	}
	if f.maxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("--max-batch-bytes %d is below 1024", f.maxBodyBytes))
	}

	switch {
	case f.tokenFile != "" && f.sharedToken != "":
		errs = append(errs, errors.New("give --token-file or --shared-token, not both"))
	case f.tokenFile != "" || f.sharedToken != "":
		tokens := []string{f.sharedToken}
		if f.tokenFile != "" {
			var err error
			if tokens, err = readSecretLines(f.tokenFile); err != nil {
				errs = append(errs, fmt.Errorf("--token-file: %w", err))
			}
		}
		if a, err := auth.NewSharedToken("static-agent", tokens...); err != nil {
			errs = append(errs, fmt.Errorf("static token: %w", err))
		} else {
			cfg.Auth = a
		}
	default:
		klog.SetSlogLogger(log.With("component", "client-go"))
		a, err := f.tokenReview(f.serviceAccounts)
		if err != nil {
			errs = append(errs, err)
		}
		cfg.Auth = a
	}

	switch {
	case f.replicationSecretFile != "" && f.replicaTokenFile != "":
		errs = append(errs, errors.New("give --replication-secret-file or --replica-token-file, not both"))
	case f.replicaTokenFile != "":
		if _, err := readSecretLines(f.replicaTokenFile); err != nil {
			errs = append(errs, fmt.Errorf("--replica-token-file: %w", err))
		}
		if f.tokenFile != "" || f.sharedToken != "" {
			errs = append(errs, errors.New("--replica-token-file needs TokenReview mode (no --token-file/--shared-token); use --replication-secret-file in static mode"))
			break
		}
		a, err := f.tokenReview([]string{f.replicaServiceAccount})
		if err != nil {
			errs = append(errs, err)
		}
		path := f.replicaTokenFile
		cfg.ReplicaAuth = a
		cfg.ReplicaToken = func() (string, error) {
			lines, err := readSecretLines(path)
			if err == nil && len(lines) != 1 {
				err = fmt.Errorf("%s: want one line, found %d", path, len(lines))
			}
			if err != nil {
				return "", err
			}
			return lines[0], nil
		}
	case f.replicationSecretFile != "":
		lines, err := readSecretLines(f.replicationSecretFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("--replication-secret-file: %w", err))
		case len(lines) != 1:
			errs = append(errs, fmt.Errorf("--replication-secret-file: want one line, found %d", len(lines)))
		default:
			a, err := auth.NewSharedToken("replica", lines[0])
			if err != nil {
				errs = append(errs, fmt.Errorf("--replication-secret-file: %w", err))
			}
			secret := lines[0]
			cfg.ReplicaAuth, cfg.ReplicaToken = a, func() (string, error) { return secret, nil }
		}
	}
	if f.peerDNS != "" {
		host, port, err := net.SplitHostPort(f.peerDNS)
		if err != nil || host == "" || port == "" {
			errs = append(errs, fmt.Errorf("--peer-dns %q: want HOST:PORT", f.peerDNS))
		} else {
			cfg.LookupPeers = func(ctx context.Context) ([]string, error) {
				addrs, err := net.DefaultResolver.LookupHost(ctx, host)
				urls := make([]string, 0, len(addrs))
				for _, a := range addrs {
					urls = append(urls, "http://"+net.JoinHostPort(a, port))
				}
				return urls, err
			}
		}
	}
	cfg.SelfURL = f.advertiseURL
	if cfg.SelfURL == "" {
		if ip := os.Getenv("POD_IP"); ip != "" {
			_, port, err := net.SplitHostPort(f.listen)
			if err == nil {
				cfg.SelfURL = "http://" + net.JoinHostPort(ip, port)
			}
		}
	}
	if cfg.SelfURL != "" {
		if u, err := url.Parse(cfg.SelfURL); err != nil || u.Host == "" {
			errs = append(errs, fmt.Errorf("--advertise-url %q: want http://HOST:PORT", cfg.SelfURL))
		}
	}
	if (len(f.peerURLs) > 0 || f.peerDNS != "") && cfg.ReplicaAuth == nil {
		errs = append(errs, errors.New("peers need --replica-token-file (in a cluster) or --replication-secret-file"))
	}
	if f.peerDNS != "" && cfg.SelfURL == "" {
		errs = append(errs, errors.New("--peer-dns needs --advertise-url (or $POD_IP) to recognise this replica among the addresses"))
	}
	return cfg, errors.Join(errs...)
}

// tokenReview builds a TokenReview authenticator admitting serviceAccounts,
// from in-cluster config or --kubeconfig.
func (f *aggregatorFlags) tokenReview(serviceAccounts []string) (auth.Authenticator, error) {
	client, err := kubeClient(f.kubeconfig, "xosprobe-aggregator", "give --kubeconfig or a static --token-file")
	if err != nil {
		return nil, fmt.Errorf("TokenReview: %w", err)
	}
	return auth.NewTokenReview(client.AuthenticationV1().TokenReviews(), auth.TokenReviewConfig{
		Audience: f.audience, ServiceAccounts: serviceAccounts, CacheTTL: f.reviewCacheTTL})
}

// readSecretLines returns the non-empty, trimmed lines of a (small) file.
func readSecretLines(path string) ([]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(io.LimitReader(fh, 1<<20))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

func runAggregator(ctx context.Context, listen string, cfg aggregator.Config) error {
	s, err := aggregator.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	cfg.Log.Info("aggregator starting", "listen", ln.Addr().String(), "delta_window", cfg.DeltaWindow, "self", cfg.SelfURL)
	return s.Run(ctx, ln)
}

package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/xosprobe/xosprobe/agent/responder"
)

// newServeCmd runs only the responder: a probe target for `xosprobe check`
// where no agent runs (a debug pod next to a workload, a laptop, the demo).
func newServeCmd() *cobra.Command {
	cfg := responder.DefaultConfig()
	cfg.OS = runtime.GOOS
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve only the probe target ports (health HTTP, TCP, NetworkPolicy allow/deny)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			if cfg.Node == "" {
				cfg.Node, _ = os.Hostname()
			}
			r, err := responder.Listen(cfg, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "serving http %s%s, tcp %s, netpol-allow %s, netpol-deny %s\n",
				r.Addr("http"), responder.HealthPath, r.Addr("tcp"), r.Addr("allow"), r.Addr("deny"))
			r.Serve(cmd.Context())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "health HTTP listen address")
	f.StringVar(&cfg.TCPAddr, "tcp-addr", cfg.TCPAddr, "TCP connect-check listen address")
	f.StringVar(&cfg.AllowAddr, "allow-addr", cfg.AllowAddr, "NetworkPolicy-allowed port listen address")
	f.StringVar(&cfg.DenyAddr, "deny-addr", cfg.DenyAddr, "NetworkPolicy-denied port listen address")
	f.StringVar(&cfg.Node, "node", "", "node name echoed in the health body (default: host name)")
	return cmd
}

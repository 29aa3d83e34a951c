// Command xosprobe measures connectivity and latency between Windows and Linux
// pods: `agent` runs on every node, `aggregator` computes the cross-OS delta,
// and `check` runs the six-step diagnostic once, for `kubectl exec`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

// errFailed signals a run that completed and found failures: exit 1, nothing more to print.
var errFailed = errors.New("checks failed")

// errInconclusive signals a run with no failure whose steps did not all
// prove something (a refusal toward a port not known to listen): exit 3.
var errInconclusive = errors.New("checks inconclusive")

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errFailed):
		return 1
	case errors.Is(err, errInconclusive):
		return 3
	}
	fmt.Fprintln(os.Stderr, "xosprobe:", err)
	return 2
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "xosprobe",
		Short:         "Connectivity and latency probe for mixed Windows/Linux Kubernetes clusters",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.SetVersionTemplate("xosprobe {{.Version}}\n")
	root.AddCommand(newVersionCmd(), newCheckCmd(), newServeCmd(), newAgentCmd(), newPolicyCmd(), newAggregatorCmd(), newMatrixCmd(), newDemoCmd())
	return root
}

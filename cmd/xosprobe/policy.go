package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/xosprobe/xosprobe/probe/netpol"
)

type policyExplainConfig struct {
	file                   string
	from, fromIP, to, port string
	json                   bool
}

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Evaluate Kubernetes NetworkPolicies offline",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newPolicyExplainCmd())
	return cmd
}

func newPolicyExplainCmd() *cobra.Command {
	var cfg policyExplainConfig
	cmd := &cobra.Command{
		Use:   "explain -f OBJECTS.yaml (--from NS/POD | --from-ip IP) --to NS/POD --port PORT[/PROTO]",
		Short: "Say whether NetworkPolicy allows a connection, and which policies and rules decide it",
		Long: `Reads Namespaces, Pods (with status.podIP and container ports) and
networking.k8s.io/v1 NetworkPolicies from a YAML or JSON file, as written by
kubectl get -o yaml, and evaluates one connection with the Kubernetes API's
semantics. The first word of the output is ALLOW or DENY; the following lines
name, for the source's egress and the destination's ingress, the policies that
select the pod and the rule, peer and port entries that allow the traffic.

Both verdicts exit 0. Invalid input (unknown pod, malformed selector, invalid
CIDR, unknown protocol, missing podIP, ...) is an error naming the document,
the object and the field.`,
		Example: `  kubectl get ns,pods,networkpolicies -A -o yaml > objects.yaml
  xosprobe policy explain -f objects.yaml --from shop/web-0 --to shop/db-0 --port 5432
  xosprobe policy explain -f objects.yaml --from-ip 203.0.113.7 --to shop/web-0 --port http/tcp --json
  kubectl get ns,pods,netpol -A -o yaml | xosprobe policy explain -f - --from a/x --to b/y --port 53/udp`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPolicyExplain(cmd.InOrStdin(), cmd.OutOrStdout(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfg.file, "filename", "f", "", "YAML or JSON file of Namespaces, Pods and NetworkPolicies; - reads stdin")
	f.StringVar(&cfg.from, "from", "", "source pod NS/POD")
	f.StringVar(&cfg.fromIP, "from-ip", "", "source IP outside the cluster (only the destination's ingress applies)")
	f.StringVar(&cfg.to, "to", "", "destination pod NS/POD")
	f.StringVar(&cfg.port, "port", "", "destination PORT[/PROTO]: a number or a container port name of the destination, TCP (default), UDP or SCTP")
	f.BoolVar(&cfg.json, "json", false, "print the answer as JSON")
	for _, name := range []string{"filename", "to", "port"} {
		_ = cmd.MarkFlagRequired(name)
	}
	cmd.MarkFlagsOneRequired("from", "from-ip")
	cmd.MarkFlagsMutuallyExclusive("from", "from-ip")
	return cmd
}

func runPolicyExplain(stdin io.Reader, out io.Writer, cfg policyExplainConfig) error {
	// Parse the query first: a typo in a flag should not wait for a large file.
	q, err := netpol.ParseQuery(netpol.QueryArgs{From: cfg.from, FromIP: cfg.fromIP, To: cfg.to, Port: cfg.port})
	if err != nil {
		return err
	}
	var snap *netpol.Snapshot
	if cfg.file == "-" {
		if snap, err = netpol.Load(stdin); err != nil {
			err = fmt.Errorf("stdin: %w", err)
		}
	} else {
		snap, err = netpol.LoadFile(cfg.file)
	}
	if err != nil {
		return err
	}
	e, err := snap.Evaluator()
	if err != nil {
		return err
	}
	a, err := e.Evaluate(q)
	if err != nil {
		return err
	}
	if cfg.json {
		return a.WriteJSON(out)
	}
	return a.WriteText(out)
}

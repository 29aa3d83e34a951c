package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/xosprobe/xosprobe/agent/netpol"
)

type policyExplainConfig struct {
	file                   string
	from, fromIP, to, port string
	json                   bool
}

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Evaluate Kubernetes network policies offline",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newPolicyExplainCmd())
	return cmd
}

func newPolicyExplainCmd() *cobra.Command {
	var cfg policyExplainConfig
	cmd := &cobra.Command{
		Use:   "explain -f OBJECTS.yaml (--from NS/POD | --from-ip IP) --to NS/POD --port PORT[/PROTO]",
		Short: "Say whether network policy allows a connection, and which policies and rules decide it",
		Long: `Reads objects from a YAML or JSON file, as written by kubectl get -o yaml,
and evaluates one connection with the Kubernetes APIs' semantics:

  Namespaces, Pods (with status.podIP and container ports), Nodes (for nodes
  peers), networking.k8s.io/v1 NetworkPolicies, and the policy.networking.k8s.io
  ClusterNetworkPolicies (v1alpha2, v1beta1), AdminNetworkPolicies and
  BaselineAdminNetworkPolicies (v1alpha1), evaluated in the API's order: Admin
  tier, NetworkPolicy, Baseline tier.

  Workload manifests (Deployment, DaemonSet, StatefulSet, ReplicaSet, Job,
  CronJob): each becomes a pod with its pod template's labels and ports, named
  NS/KIND/NAME with KIND in lower case (shop/deployment/web), so a query can ask
  whether manifests will allow a connection before they are deployed. Such a pod
  has no IP, so ipBlock and networks peers cannot match it.

  Policy objects of kinds not modelled here (Calico, Cilium, Antrea, or any
  other *NetworkPolicy kind): they make the verdict UNKNOWN for the pairs they
  can affect (their namespace, or every pod when cluster-scoped). Staged
  policies and Calico/Antrea tiers enforce nothing and are listed as ignored.

The first word of the output is ALLOW, DENY or UNKNOWN. An UNKNOWN caused by
unmodelled kinds lists those objects, then "modelled policies alone: VERDICT".
The following lines name, for the source's egress and the destination's
ingress, the layer that decided, the cluster policy rules (kind, name, rule,
action) and NetworkPolicy rules that decide it and, for a denial, why each rule
of a selecting NetworkPolicy does not match (which peer, which port).

Exit status: 0 for ALLOW and DENY, 3 for UNKNOWN, 2 for invalid input
(unknown pod, malformed selector, invalid CIDR, unknown protocol, missing
podIP, ...), which is an error naming the document, the object and the field.`,
		Example: `  kubectl get ns,pods,nodes,networkpolicies,clusternetworkpolicies -A -o yaml > objects.yaml
  xosprobe policy explain -f objects.yaml --from shop/web-0 --to shop/db-0 --port 5432
  xosprobe policy explain -f objects.yaml --from-ip 203.0.113.7 --to shop/web-0 --port http/tcp --json
  cat namespaces.yaml deploy/*.yaml | xosprobe policy explain -f - --from shop/deployment/web --to shop/statefulset/db --port 5432`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPolicyExplain(cmd.InOrStdin(), cmd.OutOrStdout(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfg.file, "filename", "f", "", "YAML or JSON file of Namespaces, Pods, workloads, Nodes and policies; - reads stdin")
	f.StringVar(&cfg.from, "from", "", "source pod NS/POD, or NS/KIND/NAME for a workload manifest's pod")
	f.StringVar(&cfg.fromIP, "from-ip", "", "source IP outside the cluster (only the destination's ingress applies)")
	f.StringVar(&cfg.to, "to", "", "destination pod NS/POD, or NS/KIND/NAME for a workload manifest's pod")
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
		err = a.WriteJSON(out)
	} else {
		err = a.WriteText(out)
	}
	if err == nil && a.Verdict == netpol.Unknown {
		return errPolicyUnknown
	}
	return err
}

// errPolicyUnknown exits 3, like the other answers that cannot be given.
var errPolicyUnknown = fmt.Errorf("policy verdict unknown: %w", errInconclusive)

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/xosprobe/xosprobe/agent"
	"github.com/xosprobe/xosprobe/agent/discovery"
)

// kubeFlags select the Kubernetes objects the agent (and in-pod check) watch.
type kubeFlags struct {
	kubeconfig     string
	selector       string
	serviceLinux   string
	serviceWindows string
	clusterDomain  string
	watchPolicies  bool
	rediscover     time.Duration
	podIP          string
	dnsService     string
	// client overrides the client built from kubeconfig or in-cluster config (tests).
	client func() (kubernetes.Interface, error)

	built kubernetes.Interface // clientset's, shared by discovery and the DNS Service lookup
}

func (k *kubeFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&k.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file; empty: in-cluster config")
	fl.StringVar(&k.selector, "agent-selector", "app.kubernetes.io/name=xosprobe,app.kubernetes.io/component=agent", "label selector of the agent pods in --namespace")
	fl.StringVar(&k.serviceLinux, "service-linux", "xosprobe-linux", "probe Service selecting the Linux agents")
	fl.StringVar(&k.serviceWindows, "service-windows", "xosprobe-windows", "probe Service selecting the Windows agents")
	fl.StringVar(&k.clusterDomain, "cluster-domain", discovery.DefaultClusterDomain, "cluster DNS domain")
	fl.BoolVar(&k.watchPolicies, "watch-network-policies", true, "expect NetworkPolicy verdicts from the live policies (needs list/watch on networkpolicies and namespaces, and on the policy CRDs the cluster serves)")
	fl.DurationVar(&k.rediscover, "policy-rediscover-interval", discovery.DefaultPolicyRediscoverInterval, "how often API discovery looks for policy kinds installed or removed since the start (ClusterNetworkPolicy, CNI policy CRDs)")
	fl.StringVar(&k.podIP, "pod-ip", os.Getenv("POD_IP"), "this pod's IP (downward API: status.podIP) [$POD_IP]")
	fl.StringVar(&k.dnsService, "dns-service", "kube-system/kube-dns", "NAMESPACE/NAME of the cluster DNS Service, read when the OS names no DNS server")
}

// discovery builds the informer-backed view of the cluster, with client-go's
// klog output routed into log.
func (k *kubeFlags) discovery(node, namespace, pod string, log *slog.Logger) (*discovery.Discovery, error) {
	if err := k.validate(node, namespace, pod); err != nil {
		return nil, err
	}
	klog.SetSlogLogger(log.With("component", "client-go"))
	client, err := k.clientset()
	if err != nil {
		return nil, err
	}
	var dyn dynamic.Interface
	if k.watchPolicies && k.client == nil {
		cfg, err := kubeRESTConfig(k.kubeconfig, "xosprobe", "give --kubeconfig or static --peer flags")
		if err != nil {
			return nil, err
		}
		if dyn, err = dynamic.NewForConfig(cfg); err != nil {
			return nil, err
		}
	}
	return discovery.New(discovery.Config{
		Client: client, Namespace: namespace, PodName: pod, NodeName: node, PodIP: k.podIP,
		AgentSelector: k.selector, ClusterDomain: k.clusterDomain, WatchNetworkPolicies: k.watchPolicies,
		Dynamic: dyn, PolicyRediscoverInterval: k.rediscover,
		Services: map[string]string{"linux": k.serviceLinux, "windows": k.serviceWindows},
		Logger:   log,
	})
}

// validate says in flags, before the discovery package would say it in its
// Config's field names, what reading the cluster lacks.
func (k *kubeFlags) validate(node, namespace, pod string) error {
	for _, f := range []struct{ flag, v string }{{"--node ($NODE_NAME)", node}, {"--pod ($POD_NAME)", pod}, {"--namespace ($POD_NAMESPACE)", namespace}} {
		if f.v == "" {
			return fmt.Errorf("reading the cluster needs %s: the downward API sets it in an agent pod", f.flag)
		}
	}
	if strings.TrimSpace(k.selector) == "" {
		return errors.New("--agent-selector is empty: it selects the agent pods")
	}
	if _, err := labels.Parse(k.selector); err != nil {
		return fmt.Errorf("--agent-selector %q: not a label selector: %w", k.selector, err)
	}
	if k.serviceLinux == "" || k.serviceWindows == "" {
		return errors.New("--service-linux and --service-windows must name the probe Services")
	}
	if k.rediscover < 0 {
		return fmt.Errorf("--policy-rediscover-interval %s must not be negative", k.rediscover)
	}
	return nil
}

// clientset returns the one client of this command, built on first use.
func (k *kubeFlags) clientset() (kubernetes.Interface, error) {
	if k.built != nil {
		return k.built, nil
	}
	newClient := k.client
	if newClient == nil {
		newClient = k.newClient
	}
	client, err := newClient()
	if err != nil {
		return nil, err
	}
	k.built = client
	return client, nil
}

func (k *kubeFlags) newClient() (kubernetes.Interface, error) {
	return kubeClient(k.kubeconfig, "xosprobe", "give --kubeconfig or static --peer flags")
}

// kubeClient builds a client from kubeconfig, or from the in-cluster config
// when kubeconfig is empty; outside says what to do outside a cluster.
func kubeClient(kubeconfig, agent, outside string) (kubernetes.Interface, error) {
	cfg, err := kubeRESTConfig(kubeconfig, agent, outside)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// kubeRESTConfig is the client configuration from kubeconfig, or in-cluster
// when kubeconfig is empty.
func kubeRESTConfig(kubeconfig, agent, outside string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w (outside a cluster, %s)", err, outside)
	}
	cfg.UserAgent = agent + "/" + version
	return cfg, nil
}

// runKubeAgent runs the agent with peers from the Kubernetes API.
func runKubeAgent(cmd *cobra.Command, cfg agent.Config, f *agentFlags, log *slog.Logger) error {
	if f.checkConfig { // validate the flags without contacting the API server
		if _, err := agent.New(cfg, agent.StaticSource{}, nil, log); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "configuration ok: Kubernetes mode, node %s (%s) in %s, interval %s, aggregator %q\n",
			cfg.Self.Node, cfg.Self.OS, f.namespace, cfg.Scheduler.Interval, cfg.Reporter.URL)
		return nil
	}
	d, err := f.kube.discovery(f.node, f.namespace, f.pod, log)
	if err != nil {
		return err
	}
	var expect agent.Expecter = agent.Declared{}
	if f.kube.watchPolicies {
		expect = agent.PolicyExpecter{D: d, Namespace: f.namespace, SelfPod: f.pod, Log: log}
	}
	a, err := agent.New(cfg, agent.KubeSource{D: d, Ports: cfg.Ports}, expect, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	var wg sync.WaitGroup
	var discErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if discErr = d.Run(ctx); discErr != nil {
			cancel() // without a synced view the agent cannot probe: stop it too
		}
	}()
	runErr := a.Run(ctx)
	cancel()
	wg.Wait()
	return errors.Join(runErr, discErr)
}

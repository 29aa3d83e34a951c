package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

const (
	// DefaultClusterDomain is the DNS suffix of Service names when Config leaves it empty.
	DefaultClusterDomain = "cluster.local"
	// DefaultSyncTimeout bounds the wait for the first LIST of every informer. A
	// missing RBAC rule makes the reflector retry forever; the timeout turns that
	// into an error that names the informers that did not sync.
	DefaultSyncTimeout = 2 * time.Minute
	// DefaultPolicyRediscoverInterval is how often API discovery looks for
	// policy kinds that appeared or went away.
	DefaultPolicyRediscoverInterval = 5 * time.Minute
)

// Config is what the agent knows about itself before it talks to the API server.
// cmd/ fills it from flags and the downward API.
type Config struct {
	Client kubernetes.Interface

	// Namespace, PodName and NodeName identify this agent (downward API:
	// metadata.namespace, metadata.name, spec.nodeName).
	Namespace string
	PodName   string
	NodeName  string
	// PodIP (downward API status.podIP) is used for Snapshot.Self until the
	// agent's own pod shows up in the cache. Optional.
	PodIP string

	// AgentSelector selects the agent pods of both DaemonSets in Namespace,
	// e.g. "app.kubernetes.io/name=xosprobe,app.kubernetes.io/component=agent".
	AgentSelector string

	// Services maps an OS ("linux", "windows") to the name of its probe Service
	// in Namespace. Keys are lower-cased. May be empty.
	Services map[string]string

	// ClusterDomain is the suffix of Service FQDNs; DefaultClusterDomain if empty.
	ClusterDomain string

	// ResyncPeriod is passed to the informers; 0 (the default) disables resync.
	// Resync never changes a Snapshot by itself, so there is little reason to set it.
	ResyncPeriod time.Duration

	// SyncTimeout bounds the initial cache sync; DefaultSyncTimeout if zero.
	SyncTimeout time.Duration

	// WatchNetworkPolicies adds cluster-wide NetworkPolicy and Namespace
	// informers for the agent/netpol evaluator. Off, the RBAC for those two
	// resources can be omitted and the List methods for them return
	// ErrPoliciesNotWatched.
	WatchNetworkPolicies bool

	// Dynamic lists and watches the policy kinds only some clusters serve
	// (policy.networking.k8s.io and CNI policy CRDs), found through API
	// discovery when WatchNetworkPolicies is on. Without it, served kinds are
	// reported as unreadable, so expectations they could change are unknown.
	Dynamic dynamic.Interface
	// APIDiscovery answers API discovery; Client.Discovery() if nil.
	APIDiscovery discovery.DiscoveryInterface
	// PolicyRediscoverInterval repeats that API discovery, so CRDs installed
	// after the agent started are followed; DefaultPolicyRediscoverInterval
	// if zero.
	PolicyRediscoverInterval time.Duration

	// Logger receives the package's logs; nil discards them.
	Logger *slog.Logger
}

// normalized validates c and returns a copy with defaults applied.
func (c Config) normalized() (Config, labels.Selector, error) {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("the Client is required"))
	}
	for _, f := range []struct{ name, val string }{
		{"Namespace", c.Namespace}, {"PodName", c.PodName}, {"NodeName", c.NodeName},
	} {
		if f.val == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.name))
		}
	}

	var sel labels.Selector
	if strings.TrimSpace(c.AgentSelector) == "" {
		// An empty selector would cache every pod in the namespace.
		errs = append(errs, errors.New("AgentSelector is required"))
	} else if s, err := labels.Parse(c.AgentSelector); err != nil {
		errs = append(errs, fmt.Errorf("AgentSelector: %w", err))
	} else {
		sel = s
	}

	svcs := make(map[string]string, len(c.Services))
	for _, k := range slices.Sorted(maps.Keys(c.Services)) {
		name := c.Services[k]
		key := strings.ToLower(strings.TrimSpace(k))
		switch {
		case key == "":
			errs = append(errs, fmt.Errorf("services: empty OS key for %q", name))
		case svcs[key] != "":
			errs = append(errs, fmt.Errorf("services: OS %q given twice", key))
		default:
			for _, msg := range validation.IsDNS1035Label(name) {
				errs = append(errs, fmt.Errorf("services[%s]: %q: %s", k, name, msg))
			}
			svcs[key] = name
		}
	}
	c.Services = svcs

	c.ClusterDomain = strings.Trim(c.ClusterDomain, ".")
	if c.ClusterDomain == "" {
		c.ClusterDomain = DefaultClusterDomain
	}
	if c.ResyncPeriod < 0 {
		errs = append(errs, errors.New("ResyncPeriod must not be negative"))
	}
	if c.SyncTimeout < 0 {
		errs = append(errs, errors.New("SyncTimeout must not be negative"))
	}
	if c.SyncTimeout == 0 {
		c.SyncTimeout = DefaultSyncTimeout
	}
	if c.PolicyRediscoverInterval < 0 {
		errs = append(errs, errors.New("PolicyRediscoverInterval must not be negative"))
	}
	if c.PolicyRediscoverInterval == 0 {
		c.PolicyRediscoverInterval = DefaultPolicyRediscoverInterval
	}
	if c.APIDiscovery == nil && c.Client != nil {
		c.APIDiscovery = c.Client.Discovery()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, nil, fmt.Errorf("discovery: invalid config: %w", err)
	}
	return c, sel, nil
}

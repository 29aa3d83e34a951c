//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/xosprobe/xosprobe/test/e2e/cluster"
)

const (
	// networkPolicyAPI is the module of ClusterNetworkPolicy's CRDs and types.
	networkPolicyAPI = "sigs.k8s.io/network-policy-api"
	// networkPolicyAPIVersion is used when the main module does not require it.
	networkPolicyAPIVersion = "v0.3.0"
	mismatchMetric          = "xosprobe_netpol_mismatch_total"
	realizationMetric       = "xosprobe_policy_realization_seconds"
	// policyTimeout bounds the wait for the agents to act on a change of a
	// NetworkPolicy: informers deliver it at once, then the grace.
	policyTimeout = e2ePolicyGrace + 2*time.Minute
	// e2ePolicyRediscover is the agents' --policy-rediscover-interval, when
	// the binary has the flag: how soon a newly served policy CRD is followed.
	e2ePolicyRediscover = 10 * time.Second
	// productPolicyRediscover is the agents' default for it.
	productPolicyRediscover = 5 * time.Minute
)

// crdPolicyTimeout bounds the wait for the agents to act on a policy of a
// CRD installed while they run: API discovery finds it, then the grace.
func (e *lifecycleEnv) crdPolicyTimeout() time.Duration {
	every := productPolicyRediscover
	if e.agentFlags["policy-rediscover-interval"] {
		every = e2ePolicyRediscover
	}
	return every + policyTimeout
}

var (
	crdGVR    = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	cnpGVR    = schema.GroupVersionResource{Group: "policy.networking.k8s.io", Version: "v1alpha2", Resource: "clusternetworkpolicies"}
	calicoGVR = schema.GroupVersionResource{Group: "crd.projectcalico.org", Version: "v1", Resource: "networkpolicies"}
	// agentSelector selects every agent pod, as the shipped policy does.
	agentSelector = map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "xosprobe", "app.kubernetes.io/component": "agent"}}
)

func (e *lifecycleEnv) dynamic(t *testing.T) dynamic.Interface {
	t.Helper()
	d, err := dynamic.NewForConfig(e.c.CP.REST)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// installCRD creates a CustomResourceDefinition and waits until it is
// established (served). The returned func deletes it and waits until it is
// gone (the apiserver deletes its objects first).
func (e *lifecycleEnv) installCRD(t *testing.T, crd *unstructured.Unstructured) func() {
	t.Helper()
	d := e.dynamic(t).Resource(crdGVR)
	name := crd.GetName()
	if _, err := d.Create(e.ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatalf("CRD %s: %v", name, err)
	}
	remove := func() {
		err := d.Delete(e.ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete CRD %s: %v", name, err)
			return
		}
		eventually(t, 60*time.Second, "CRD "+name+" deleted", func() error {
			if _, err := d.Get(e.ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there (%v)", err)
			}
			return nil
		})
	}
	eventually(t, 30*time.Second, "CRD "+name+" established", func() error {
		o, err := d.Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return nil
			}
		}
		return fmt.Errorf("conditions %v", conds)
	})
	return remove
}

// networkPolicyAPIDir finds the network-policy-api module on disk: the one
// the main module requires, else the pinned version from the module cache
// (downloaded through the module proxy if missing).
func (e *lifecycleEnv) networkPolicyAPIDir(t *testing.T) (dir, version string) {
	t.Helper()
	cmd := exec.CommandContext(e.ctx, "go", "list", "-m", "-f", "{{.Dir}} {{.Version}}", networkPolicyAPI)
	cmd.Dir = e.repoRoot
	if out, err := cmd.Output(); err == nil {
		if f := strings.Fields(string(out)); len(f) == 2 && f[0] != "" {
			return f[0], f[1] + " (the main module's)"
		}
	}
	out, err := exec.CommandContext(e.ctx, "go", "mod", "download", "-json", networkPolicyAPI+"@"+networkPolicyAPIVersion).Output()
	if err != nil {
		t.Fatalf("go mod download %s@%s: %v\n%s", networkPolicyAPI, networkPolicyAPIVersion, err, out)
	}
	var m struct{ Dir, Version, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Fatalf("go mod download %s: %v %s\n%s", networkPolicyAPI, err, m.Error, out)
	}
	return m.Dir, m.Version + " (pinned by the e2e)"
}

// mismatches sums, over every agent, the increase of the NetworkPolicy
// mismatch counter with labels between two reads.
func mismatches(before, now map[*cluster.Pod][]sample, labels map[string]string) float64 {
	var sum float64
	for p, ss := range now {
		n, _ := sumMetric(ss, mismatchMetric, labels)
		b, _ := sumMetric(before[p], mismatchMetric, labels)
		sum += n - b
	}
	return sum
}

// agentLogLines returns the lines of every current agent's log that contain
// all of the substrings, by pod.
func (e *lifecycleEnv) agentLogLines(substrings ...string) map[*cluster.Pod][]string {
	out := map[*cluster.Pod][]string{}
	for _, a := range *e.agents {
		b, err := os.ReadFile(a.proc.LogPath)
		if err != nil {
			continue
		}
	lines:
		for _, l := range strings.Split(string(b), "\n") {
			for _, s := range substrings {
				if !strings.Contains(l, s) {
					continue lines
				}
			}
			out[a.pod] = append(out[a.pod], l)
		}
	}
	return out
}

// policyRealization drops the agents' allow port (9442) from the shipped
// NetworkPolicy xosprobe-agent, so every agent now expects deny there.
// kube-router enforces it on the Linux nodes: the agents see the flip and
// export its realization time (dst_os linux), and count no mismatch toward
// Linux. Nothing enforces it on the Windows nodes: no realization is ever
// observed there, and once the grace is over the mismatch counts — a true
// finding. The policy is restored after.
func (e *lifecycleEnv) policyRealization(t *testing.T, r *result) {
	nps := e.c.Client.NetworkingV1().NetworkPolicies(probeNS)
	np, err := nps.Get(e.ctx, "xosprobe-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	orig := np.Spec.DeepCopy()
	dropped := false
	for i, rule := range np.Spec.Ingress {
		if len(rule.From) == 0 {
			continue
		}
		var keep []networkingv1.NetworkPolicyPort
		for _, p := range rule.Ports {
			if p.Port != nil && p.Port.IntValue() == portAllow {
				dropped = true
				continue
			}
			keep = append(keep, p)
		}
		np.Spec.Ingress[i].Ports = keep
	}
	if !dropped {
		t.Fatalf("NetworkPolicy %s/xosprobe-agent has no rule from agents with port %d: the shipped policy changed", probeNS, portAllow)
	}
	before, err := e.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nps.Update(e.ctx, np, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	defer e.restorePolicy(t, orig)

	denyOn := func(dstOS string) map[string]string {
		return map[string]string{"check": "netpol-allow", "dst_os": dstOS, "expected": "deny"}
	}
	// Within the grace, nothing is counted toward Windows yet.
	e.sleep(time.Until(applied.Add(e2ePolicyGrace / 2)))
	inGrace, err := e.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if n := mismatches(before, inGrace, denyOn("windows")); n != 0 {
		t.Errorf("%s after the policy change (grace %s): %v netpol-allow mismatches toward windows counted already", time.Since(applied).Round(time.Second), e2ePolicyGrace, n)
	}

	// Linux: realized; every agent has timed the flip toward its Linux peers.
	realized := func(ms map[*cluster.Pod][]sample, dstOS string) (count, sum float64, agents int) {
		for p, ss := range ms {
			c, _ := sumMetric(ss, realizationMetric+"_count", map[string]string{"dst_os": dstOS})
			s, _ := sumMetric(ss, realizationMetric+"_sum", map[string]string{"dst_os": dstOS})
			c0, _ := sumMetric(before[p], realizationMetric+"_count", map[string]string{"dst_os": dstOS})
			s0, _ := sumMetric(before[p], realizationMetric+"_sum", map[string]string{"dst_os": dstOS})
			if c > c0 {
				agents++
			}
			count, sum = count+c-c0, sum+s-s0
		}
		return count, sum, agents
	}
	var now map[*cluster.Pod][]sample
	eventually(t, policyTimeout, "every agent's "+realizationMetric+"{dst_os=linux} counts the flip toward its Linux peers", func() error {
		var err error
		if now, err = e.agentMetrics(); err != nil {
			return err
		}
		if n, _, agents := realized(now, "linux"); agents < len(*e.agents) {
			return fmt.Errorf("%d of %d agents observed a realization toward linux (%v flips)", agents, len(*e.agents), n)
		}
		return nil
	})
	linCount, linSum, _ := realized(now, "linux")
	r.Figure("linux: realized, mean %.2fs over %v flips (%s)", linSum/linCount, linCount, realizationMetric)

	// Windows: after the grace the mismatch counts, from every agent.
	eventually(t, policyTimeout, "netpol-allow mismatches (expected deny, observed allow) toward windows after the grace", func() error {
		var err error
		if now, err = e.agentMetrics(); err != nil {
			return err
		}
		for _, a := range *e.agents {
			if n := mismatches(map[*cluster.Pod][]sample{a.pod: before[a.pod]}, map[*cluster.Pod][]sample{a.pod: now[a.pod]}, denyOn("windows")); n == 0 {
				return fmt.Errorf("%s counted none", a.pod)
			}
		}
		return nil
	})
	winMismatch := mismatches(before, now, denyOn("windows"))
	if c, _, _ := realized(now, "windows"); c != 0 {
		t.Errorf("%v realizations toward windows observed, where nothing enforces the policy", c)
	}
	if n := mismatches(before, now, denyOn("linux")); n != 0 {
		t.Errorf("%v netpol-allow mismatches toward linux, where kube-router enforces the policy", n)
	}
	r.Figure("windows: never realized (nothing enforces it), %v mismatches counted after the grace of %s (a true finding), %s after the change",
		winMismatch, e2ePolicyGrace, time.Since(applied).Round(time.Second))
}

// restorePolicy puts the shipped spec of xosprobe-agent back and waits until
// every agent reaches its Linux peers' allow port again.
func (e *lifecycleEnv) restorePolicy(t *testing.T, spec *networkingv1.NetworkPolicySpec) {
	t.Helper()
	nps := e.c.Client.NetworkingV1().NetworkPolicies(probeNS)
	np, err := nps.Get(e.ctx, "xosprobe-agent", metav1.GetOptions{})
	if err != nil {
		t.Errorf("restore NetworkPolicy xosprobe-agent: %v", err)
		return
	}
	np.Spec = *spec
	if _, err := nps.Update(e.ctx, np, metav1.UpdateOptions{}); err != nil {
		t.Errorf("restore NetworkPolicy xosprobe-agent: %v", err)
		return
	}
	e.waitAllowSucceeds(t, "after the shipped NetworkPolicy was restored")
}

// waitAllowSucceeds waits until every agent's netpol-allow check succeeds
// toward Linux peers again.
func (e *lifecycleEnv) waitAllowSucceeds(t *testing.T, when string) {
	t.Helper()
	base, err := e.agentMetrics()
	if err != nil {
		t.Error(err)
		return
	}
	ok := map[string]string{"check": "netpol-allow", "dst_os": "linux", "result": "success"}
	eventually(t, policyTimeout, "netpol-allow toward linux succeeds from every agent "+when, func() error {
		now, err := e.agentMetrics()
		if err != nil {
			return err
		}
		for _, a := range *e.agents {
			n, _ := sumMetric(now[a.pod], "xosprobe_probe_total", ok)
			b, _ := sumMetric(base[a.pod], "xosprobe_probe_total", ok)
			if n <= b {
				return fmt.Errorf("%s: no success yet", a.pod)
			}
		}
		return nil
	})
}

// cnpExpectations installs the ClusterNetworkPolicy CRD from the
// network-policy-api module and creates an Admin-tier ClusterNetworkPolicy
// that denies the agents' allow port (9442) from agents. The API puts the
// Admin tier before NetworkPolicy, so every agent must now expect deny there.
// kube-router does not implement ClusterNetworkPolicy, so the connections
// still succeed: the mismatch is a true finding, counted toward both OSes,
// and the agents' mismatch log names the ClusterNetworkPolicy as the
// deciding policy. Then the policy and the CRD are deleted and the
// expectation is allow again.
func (e *lifecycleEnv) cnpExpectations(t *testing.T, r *result) {
	const name = "e2e-admin-deny-agents-allow-port"
	dir, version := e.networkPolicyAPIDir(t)
	path := filepath.Join(dir, "config", "crd", "standard", "policy.networking.k8s.io_clusternetworkpolicies.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the ClusterNetworkPolicy CRD of %s %s: %v", networkPolicyAPI, version, err)
	}
	var crd map[string]any
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	removeCRD := e.installCRD(t, &unstructured.Unstructured{Object: crd})
	r.Figure("CRD from %s %s", networkPolicyAPI, version)
	cnps := e.dynamic(t).Resource(cnpGVR)
	created := false
	defer func() {
		if created {
			if err := cnps.Delete(e.ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete ClusterNetworkPolicy %s: %v", name, err)
			}
		}
		removeCRD()
	}()

	peer := map[string]any{"pods": map[string]any{
		"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": probeNS}},
		"podSelector":       agentSelector,
	}}
	cnp := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": cnpGVR.GroupVersion().String(), "kind": "ClusterNetworkPolicy",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{
			"tier": "Admin", "priority": int64(10),
			"subject": peer,
			"ingress": []any{map[string]any{
				"name": "deny-agents-allow-port", "action": "Deny",
				"from":      []any{peer},
				"protocols": []any{map[string]any{"tcp": map[string]any{"destinationPort": map[string]any{"number": int64(portAllow)}}}},
			}},
		},
	}}
	before, err := e.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cnps.Create(e.ctx, cnp, metav1.CreateOptions{}); err != nil {
		t.Fatalf("ClusterNetworkPolicy %s: %v", name, err)
	}
	created = true
	applied := time.Now()

	denied := func(dstOS string) map[string]string {
		return map[string]string{"check": "netpol-allow", "dst_os": dstOS, "expected": "deny", "observed": "allow"}
	}
	var now map[*cluster.Pod][]sample
	eventually(t, e.crdPolicyTimeout(), "netpol-allow mismatches (expected deny by the ClusterNetworkPolicy, observed allow) from every agent toward both OSes", func() error {
		var err error
		if now, err = e.agentMetrics(); err != nil {
			return err
		}
		for _, a := range *e.agents {
			one := func(m map[*cluster.Pod][]sample) map[*cluster.Pod][]sample {
				return map[*cluster.Pod][]sample{a.pod: m[a.pod]}
			}
			for _, dst := range []string{"linux", "windows"} {
				if mismatches(one(before), one(now), denied(dst)) == 0 {
					return fmt.Errorf("%s: none toward %s", a.pod, dst)
				}
			}
		}
		return nil
	})
	counted := time.Since(applied)
	// The log names the ClusterNetworkPolicy as what decided the expectation.
	logs := e.agentLogLines("NetworkPolicy verdict differs", name)
	var missing []string
	example := ""
	for _, a := range *e.agents {
		if len(logs[a.pod]) == 0 {
			missing = append(missing, a.pod.String())
		} else if example == "" {
			example = logs[a.pod][0]
		}
	}
	if len(missing) > 0 {
		t.Errorf("no mismatch log line naming ClusterNetworkPolicy %s in the logs of %v; mismatch lines there:\n%s",
			name, missing, strings.Join(flatten(e.agentLogLines("NetworkPolicy verdict differs")), "\n"))
	}
	r.Figure("mismatches counted %s after the ClusterNetworkPolicy was created: %v toward linux, %v toward windows",
		counted.Round(time.Second), mismatches(before, now, denied("linux")), mismatches(before, now, denied("windows")))
	if example != "" {
		t.Logf("mismatch log: %s", example)
		r.Figure("logged as deciding policy by %d of %d agents", len(*e.agents)-len(missing), len(*e.agents))
	}

	// Deleted: the expectation is allow again and mismatches stop.
	if err := cnps.Delete(e.ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete ClusterNetworkPolicy %s: %v", name, err)
	}
	created = false
	deleted := time.Now()
	e.waitNoMismatch(t, "after the ClusterNetworkPolicy was deleted", map[string]string{"check": "netpol-allow", "expected": "deny"})
	r.Figure("mismatches stopped %s after its deletion", time.Since(deleted).Round(time.Second))
}

// waitNoMismatch waits until no agent counts a mismatch with labels over
// three intervals.
func (e *lifecycleEnv) waitNoMismatch(t *testing.T, when string, labels map[string]string) {
	t.Helper()
	eventually(t, policyTimeout, "no "+fmt.Sprint(labels)+" mismatch over three intervals "+when, func() error {
		a, err := e.agentMetrics()
		if err != nil {
			return err
		}
		e.sleep(3 * e.interval)
		b, err := e.agentMetrics()
		if err != nil {
			return err
		}
		if n := mismatches(a, b, labels); n != 0 {
			return fmt.Errorf("%v more", n)
		}
		return nil
	})
}

func flatten(m map[*cluster.Pod][]string) []string {
	var out []string
	for p, ls := range m {
		for _, l := range ls {
			out = append(out, p.String()+": "+l)
		}
	}
	return out
}

// unknownSeries returns the agents' NetworkPolicy series that say an
// expectation is unknown (a label value naming unknown on a netpol metric or
// check) and grew since before, as "pod name{labels} +n".
func unknownSeries(before, now map[*cluster.Pod][]sample) []string {
	var out []string
	for p, ss := range now {
		for _, s := range ss {
			if !strings.Contains(s.Name, "netpol") && !strings.HasPrefix(s.Labels["check"], "netpol") {
				continue
			}
			isUnknown := false
			for k, v := range s.Labels {
				// An OS label "unknown" is a peer's unclassified node, not a verdict.
				isUnknown = isUnknown || k != "src_os" && k != "dst_os" && strings.Contains(strings.ToLower(v), "unknown")
			}
			if !isUnknown {
				continue
			}
			b, _ := sumMetric(before[p], s.Name, s.Labels)
			if s.Value > b {
				out = append(out, fmt.Sprintf("%s %s%v +%v", p.Name, s.Name, s.Labels, s.Value-b))
			}
		}
	}
	return out
}

// crdPolicyUnknown defines a CRD shaped like Calico's NetworkPolicy
// (crd.projectcalico.org/v1, kind NetworkPolicy, schema left open) and one
// object of it in the agents' namespace denying their allow port. The agents
// do not model Calico policies, so their expectations for the pods it may
// select become unknown: they say so, count no mismatch (not even toward
// Windows, where the deny check otherwise mismatches on every run), and no
// alert starts. Then the object and the CRD are deleted and the Windows
// mismatch counts again.
func (e *lifecycleEnv) crdPolicyUnknown(t *testing.T, r *result) {
	const name = "e2e-calico-deny-agents"
	// The box's true finding, before: the deny check toward Windows mismatches.
	windowsDeny := map[string]string{"check": "netpol-deny", "dst_os": "windows", "expected": "deny"}
	b0, err := e.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	e.sleep(3 * e.interval)
	b1, err := e.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if n := mismatches(b0, b1, windowsDeny); n == 0 {
		t.Fatalf("netpol-deny toward windows counted no mismatch over %s before the CRD policy: nothing to make unknown", 3*e.interval)
	}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": calicoGVR.Resource + "." + calicoGVR.Group},
		"spec": map[string]any{
			"group": calicoGVR.Group, "scope": "Namespaced",
			"names": map[string]any{"kind": "NetworkPolicy", "listKind": "NetworkPolicyList", "plural": calicoGVR.Resource, "singular": "networkpolicy"},
			"versions": []any{map[string]any{
				"name": calicoGVR.Version, "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
			}},
		},
	}}
	w := newAlertWatch(t, e.prom)
	removeCRD := e.installCRD(t, crd)
	objs := e.dynamic(t).Resource(calicoGVR).Namespace(probeNS)
	created := false
	defer func() {
		if created {
			if err := objs.Delete(e.ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete Calico NetworkPolicy %s: %v", name, err)
			}
		}
		removeCRD()
	}()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": calicoGVR.GroupVersion().String(), "kind": "NetworkPolicy",
		"metadata": map[string]any{"name": name, "namespace": probeNS},
		"spec": map[string]any{
			"order":    int64(10),
			"selector": "app.kubernetes.io/component == 'agent'",
			"types":    []any{"Ingress"},
			"ingress": []any{map[string]any{
				"action": "Deny", "protocol": "TCP",
				"destination": map[string]any{"ports": []any{int64(portAllow)}},
			}},
		},
	}}
	before, err := e.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := objs.Create(e.ctx, obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("Calico NetworkPolicy %s: %v", name, err)
	}
	created = true
	applied := time.Now()
	var unknown []string
	eventually(t, e.crdPolicyTimeout(), "agents' NetworkPolicy expectations reported unknown", func() error {
		now, err := e.agentMetrics()
		if err != nil {
			return err
		}
		unknown = unknownSeries(before, now)
		for _, a := range *e.agents {
			found := false
			for _, u := range unknown {
				found = found || strings.HasPrefix(u, a.pod.Name+" ")
			}
			if !found {
				return fmt.Errorf("%s reports no unknown expectation", a.pod)
			}
		}
		return nil
	})
	became := time.Since(applied)
	// Unknown, not wrong: no mismatch at all while the object exists.
	m1, err := e.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	e.sleep(lifecycleSettle)
	m2, err := e.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if n := mismatches(m1, m2, nil); n != 0 {
		t.Errorf("%v NetworkPolicy mismatches counted over %s while a Calico policy the agents cannot model exists", n, lifecycleSettle)
	}
	w.judge(t, r, "Calico-like CRD policy")
	r.Figure("expectations unknown %s after the object was created (%d series, e.g. %s); mismatches with it over %s: %v (toward windows before: %v in %s)",
		became.Round(time.Second), len(unknown), first(unknown), lifecycleSettle, mismatches(m1, m2, nil), mismatches(b0, b1, windowsDeny), 3*e.interval)

	// Deleted: the Windows finding counts again.
	if err := objs.Delete(e.ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete Calico NetworkPolicy %s: %v", name, err)
	}
	created = false
	removeCRD()
	removeCRD = func() {}
	gone, err := e.agentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, policyTimeout, "netpol-deny mismatches toward windows counted again after the CRD policy was deleted", func() error {
		now, err := e.agentMetrics()
		if err != nil {
			return err
		}
		if mismatches(gone, now, windowsDeny) == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
}

func first(ss []string) string {
	if len(ss) == 0 {
		return "-"
	}
	return ss[0]
}

func TestUnknownSeriesAndMismatches(t *testing.T) {
	p := &cluster.Pod{Name: "agent-a"}
	s := func(name string, v float64, kv ...string) sample {
		l := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return sample{Name: name, Labels: l, Value: v}
	}
	before := map[*cluster.Pod][]sample{p: {
		s("xosprobe_probe_total", 5, "check", "netpol-deny", "result", "expectation_unknown"),
		s(mismatchMetric, 7, "check", "netpol-deny", "dst_os", "windows", "expected", "deny", "observed", "allow"),
	}}
	for _, tc := range []struct {
		name     string
		now      []sample
		unknown  int
		mismatch float64
		labels   map[string]string
	}{
		{name: "unknown grew", now: []sample{
			s("xosprobe_probe_total", 9, "check", "netpol-deny", "result", "expectation_unknown"),
			s(mismatchMetric, 7, "check", "netpol-deny", "dst_os", "windows", "expected", "deny", "observed", "allow"),
		}, unknown: 1, mismatch: 0},
		{name: "unknown unchanged, mismatches grew", now: []sample{
			s("xosprobe_probe_total", 5, "check", "netpol-deny", "result", "expectation_unknown"),
			s(mismatchMetric, 10, "check", "netpol-deny", "dst_os", "windows", "expected", "deny", "observed", "allow"),
		}, unknown: 0, mismatch: 3, labels: map[string]string{"dst_os": "windows"}},
		{name: "an unknown OS is no unknown verdict", now: []sample{
			s("xosprobe_probe_total", 3, "check", "netpol-allow", "dst_os", "unknown", "result", "success"),
			s("xosprobe_probe_total", 3, "check", "tcp", "result", "expectation_unknown"),
		}, unknown: 0, mismatch: -7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := map[*cluster.Pod][]sample{p: tc.now}
			if got := unknownSeries(before, now); len(got) != tc.unknown {
				t.Errorf("unknownSeries = %q, want %d", got, tc.unknown)
			}
			if got := mismatches(before, now, tc.labels); got != tc.mismatch {
				t.Errorf("mismatches = %v, want %v", got, tc.mismatch)
			}
		})
	}
}

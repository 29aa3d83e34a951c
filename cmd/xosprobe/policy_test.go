package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const policyObjects = `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops, labels: {team: ops}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {containers: [{name: iis, image: iis, ports: [{name: http, containerPort: 80}]}]}
status: {podIP: 10.244.1.5}
---
apiVersion: v1
kind: Pod
metadata: {name: prom-0, namespace: ops, labels: {app: prometheus}}
spec: {containers: [{name: prom, image: prom}]}
status: {podIP: 10.244.3.7}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: ops}}}]
    ports: [{port: http}]
`

func writeObjects(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(tempDir(t), "objects.yaml")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func runPolicy(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := newPolicyCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

func TestPolicyExplainVerdicts(t *testing.T) {
	f := writeObjects(t, policyObjects)
	cases := []struct {
		name  string
		args  []string
		first string
		has   []string
	}{
		{
			name:  "allowed by a namespaceSelector on a named port",
			args:  []string{"--from", "ops/prom-0", "--to", "shop/web-0", "--port", "http"},
			first: "ALLOW TCP/http(80) from pod ops/prom-0 (10.244.3.7) to pod shop/web-0 (10.244.1.5)",
			has:   []string{"shop/web: ingress rule 0, from[0] namespaceSelector {team=ops}, ports[0] TCP/http"},
		},
		{
			name:  "denied: wrong protocol",
			args:  []string{"--from", "ops/prom-0", "--to", "shop/web-0", "--port", "80/udp"},
			first: "DENY UDP/80",
			has:   []string{"shop/web: 1 ingress rule, none matches"},
		},
		{
			name:  "denied: external source",
			args:  []string{"--from-ip", "203.0.113.7", "--to", "shop/web-0", "--port", "80/TCP"},
			first: "DENY TCP/80 from ip 203.0.113.7",
			has:   []string{"egress: not evaluated"},
		},
		{
			name:  "unrestricted destination",
			args:  []string{"--from", "shop/web-0", "--to", "ops/prom-0", "--port", "9090"},
			first: "ALLOW TCP/9090",
			has:   []string{"ingress of ops/prom-0: unrestricted: no policy selects the pod for ingress"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runPolicy(t, "", append([]string{"explain", "-f", f}, tc.args...)...)
			require.NoError(t, err, "both verdicts exit 0")
			lines := strings.Split(out, "\n")
			assert.Equal(t, tc.first, lines[0][:min(len(lines[0]), len(tc.first))], out)
			for _, h := range tc.has {
				assert.Contains(t, out, h)
			}
		})
	}
}

func TestPolicyExplainJSONFromStdin(t *testing.T) {
	out, err := runPolicy(t, policyObjects, "explain", "-f", "-", "--from", "ops/prom-0", "--to", "shop/web-0", "--port", "80", "--json")
	require.NoError(t, err)
	var got struct {
		Verdict string `json:"verdict"`
		Ingress struct {
			Matches []struct {
				Policy struct{ Name string } `json:"policy"`
				Rule   int                   `json:"rule"`
			} `json:"matches"`
		} `json:"ingress"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	assert.Equal(t, "ALLOW", got.Verdict)
	require.Len(t, got.Ingress.Matches, 1)
	assert.Equal(t, "web", got.Ingress.Matches[0].Policy.Name)
}

func TestPolicyExplainErrors(t *testing.T) {
	good := writeObjects(t, policyObjects)
	bad := writeObjects(t, strings.Replace(policyObjects, "{port: http}", "{port: http, protocol: ICMP}", 1))
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no file flag", []string{"--from", "ops/prom-0", "--to", "shop/web-0", "--port", "80"}, `required flag(s) "filename" not set`},
		{"no source", []string{"-f", good, "--to", "shop/web-0", "--port", "80"}, "at least one of the flags in the group [from from-ip] is required"},
		{"two sources", []string{"-f", good, "--from", "ops/prom-0", "--from-ip", "192.0.2.1", "--to", "shop/web-0", "--port", "80"}, "were all set"},
		{"missing file", []string{"-f", filepath.Join(tempDir(t), "nope.yaml"), "--from", "ops/prom-0", "--to", "shop/web-0", "--port", "80"}, "nope.yaml"},
		{"invalid object", []string{"-f", bad, "--from", "ops/prom-0", "--to", "shop/web-0", "--port", "80"},
			`document 5 (line 21) NetworkPolicy shop/web: spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP"`},
		{"unknown pod", []string{"-f", good, "--from", "ops/prom-9", "--to", "shop/web-0", "--port", "80"}, "source unknown pod ops/prom-9"},
		{"unknown port name", []string{"-f", good, "--from", "ops/prom-0", "--to", "shop/web-0", "--port", "grpc"}, `no container port named "grpc"`},
		{"bad port", []string{"-f", good, "--from", "ops/prom-0", "--to", "shop/web-0", "--port", "80/icmp"}, `unknown protocol "icmp"`},
		{"bad pod ref", []string{"-f", good, "--from", "ops/prom-0", "--to", "shop/web/0", "--port", "80"}, "want NS/POD"},
		{"source IP of a pod", []string{"-f", good, "--from-ip", "10.244.3.7", "--to", "shop/web-0", "--port", "80"}, "belongs to pod ops/prom-0"},
		{"positional argument", []string{"-f", good, "--from", "ops/prom-0", "--to", "shop/web-0", "--port", "80", "extra"}, "unknown command"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runPolicy(t, "", append([]string{"explain"}, tc.args...)...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

const clusterPolicyObjects = `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: no-scrape}
spec:
  tier: Admin
  priority: 5
  subject: {namespaces: {matchLabels: {team: shop}}}
  ingress:
  - {name: deny-ops, action: Deny, from: [{namespaces: {matchLabels: {team: ops}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: api, image: api, ports: [{name: http, containerPort: 80}]}]}
`

func TestPolicyExplainClusterPoliciesAndUnknown(t *testing.T) {
	calico := "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: default-deny}\nspec: {selector: all()}\n"
	cases := []struct {
		name    string
		objects string
		args    []string
		unknown bool
		lines   []string // leading lines of the output
		has     []string
	}{
		{
			name:    "a ClusterNetworkPolicy decides before the NetworkPolicy",
			objects: policyObjects + "---\n" + clusterPolicyObjects,
			args:    []string{"--from", "ops/prom-0", "--to", "shop/web-0", "--port", "80"},
			lines:   []string{"DENY TCP/80 from pod ops/prom-0 (10.244.3.7) to pod shop/web-0 (10.244.1.5)"},
			has: []string{"ingress of shop/web-0: denied by the admin tier",
				"admin tier: ClusterNetworkPolicy/no-scrape (priority 5) ingress rule 0 (deny-ops): Deny, from[0] namespaces {team=ops}, TCP/80"},
		},
		{
			name:    "a workload manifest's pod",
			objects: policyObjects + "---\n" + clusterPolicyObjects,
			args:    []string{"--from", "shop/web-0", "--to", "shop/deployment/api", "--port", "http"},
			lines:   []string{"DENY TCP/http(80) from pod shop/web-0 (10.244.1.5) to pod shop/deployment/api"},
			has:     []string{"rule 0: no peer matches: from[0] namespaceSelector {team=ops}"},
		},
		{
			name:    "an unmodelled kind makes it unknown",
			objects: policyObjects + calico,
			args:    []string{"--from", "ops/prom-0", "--to", "shop/web-0", "--port", "http"},
			unknown: true,
			lines: []string{
				"UNKNOWN TCP/http(80) from pod ops/prom-0 (10.244.3.7) to pod shop/web-0 (10.244.1.5)",
				"unknown: 1 policy object of kinds this evaluator does not model applies to this traffic:",
				"  GlobalNetworkPolicy.projectcalico.org default-deny",
				"modelled policies alone: ALLOW",
			},
		},
		{
			name:    "a staged policy is ignored, and says so",
			objects: policyObjects + strings.Replace(calico, "GlobalNetworkPolicy", "StagedGlobalNetworkPolicy", 1),
			args:    []string{"--from", "ops/prom-0", "--to", "shop/web-0", "--port", "http"},
			lines:   []string{"ALLOW TCP/http(80)"},
			has:     []string{"ignored: StagedGlobalNetworkPolicy.projectcalico.org default-deny: a staged policy reports what it would do and enforces nothing"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := writeObjects(t, tc.objects)
			out, err := runPolicy(t, "", append([]string{"explain", "-f", f}, tc.args...)...)
			if tc.unknown {
				require.ErrorIs(t, err, errInconclusive, "UNKNOWN exits 3")
			} else {
				require.NoError(t, err, out)
			}
			lines := strings.Split(out, "\n")
			require.GreaterOrEqual(t, len(lines), len(tc.lines), out)
			for i, l := range tc.lines {
				assert.Equal(t, l, lines[i][:min(len(lines[i]), len(l))], out)
			}
			for _, h := range tc.has {
				assert.Contains(t, out, h)
			}
		})
	}
}

package netpol

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

func TestLoadShop(t *testing.T) {
	s, err := LoadFile("testdata/shop.yaml")
	require.NoError(t, err)
	assert.Len(t, s.Namespaces, 2)
	assert.Len(t, s.Pods, 3)
	assert.Len(t, s.Policies, 4)
	assert.Equal(t, []string{"document 6 (line 72) Service shop/web"}, s.Skipped)

	// API defaulting was applied to what the snapshot returns.
	assert.Equal(t, "shop", s.Namespaces[0].Labels[corev1.LabelMetadataName])
	assert.Equal(t, corev1.ProtocolTCP, s.Pods[0].Spec.Containers[0].Ports[0].Protocol)
	byName := map[string]*networkingv1.NetworkPolicy{}
	for _, np := range s.Policies {
		byName[np.Name] = np
	}
	assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, byName["web-ingress"].Spec.PolicyTypes)
	assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}, byName["web-egress"].Spec.PolicyTypes)
	require.NotNil(t, byName["db-ingress"].Spec.Ingress[0].Ports[0].Protocol)
	assert.Equal(t, corev1.ProtocolTCP, *byName["db-ingress"].Spec.Ingress[0].Ports[0].Protocol)

	_, err = s.Evaluator()
	require.NoError(t, err)
}

func TestLoadClusterPoliciesAndWorkloads(t *testing.T) {
	s, err := LoadFile("testdata/cluster.yaml")
	require.NoError(t, err)
	assert.Len(t, s.Pods, 3, "one pod per workload")
	assert.Len(t, s.ClusterNetworkPolicies, 1)
	assert.Len(t, s.AdminNetworkPolicies, 1)
	assert.Len(t, s.BaselineAdminNetworkPolicies, 1)
	assert.Equal(t, []ForeignPolicy{
		{Group: "projectcalico.org", Kind: "NetworkPolicy", Namespace: "ops", Name: "ops-egress"},
		{Group: "projectcalico.org", Kind: "StagedGlobalNetworkPolicy", Name: "try-default-deny"},
	}, s.Foreign)
	e, err := s.Evaluator()
	require.NoError(t, err)

	cases := []struct {
		from, to, port string
		want, modelled Verdict
		decidedBy      Layer
	}{
		// Accept of the named port at the admin tier.
		{"ops/cronjob/report", "shop/deployment/web", "http", Unknown, Allow, LayerAdmin},
		// The ANP (priority 20) is not reached: the CNP's second rule (priority 10) denies first.
		{"ops/cronjob/report", "shop/statefulset/db", "5432", Unknown, Deny, LayerAdmin},
		{"shop/deployment/web", "shop/statefulset/db", "5432", Allow, Allow, LayerAdmin},
		// Nothing at the admin tier: the BANP isolates.
		{"shop/statefulset/db", "shop/deployment/web", "8080", Deny, Deny, LayerBaseline},
	}
	for _, tc := range cases {
		t.Run(tc.from+"->"+tc.to, func(t *testing.T) {
			q, err := ParseQuery(QueryArgs{From: tc.from, To: tc.to, Port: tc.port})
			require.NoError(t, err)
			a, err := e.Evaluate(q)
			require.NoError(t, err)
			assert.Equal(t, tc.want, a.Verdict, a.Text())
			assert.Equal(t, tc.modelled, a.Modelled, a.Text())
			assert.Equal(t, tc.decidedBy, a.Ingress.DecidedBy, a.Text())
			assert.Len(t, a.NotEnforcing, 1, "the staged policy is reported as ignored")
		})
	}
}

func TestLoadJSONLists(t *testing.T) {
	s, err := LoadFile("testdata/list.json")
	require.NoError(t, err)
	require.Len(t, s.Namespaces, 1)
	require.Len(t, s.Pods, 2)
	require.Len(t, s.Policies, 1)
	np := s.Policies[0]
	assert.Equal(t, "default", np.Namespace, "metadata.namespace defaults to default")
	assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, np.Spec.PolicyTypes)
	assert.Equal(t, "server", s.Pods[1].Name, "typed PodList items need no kind")

	e, err := s.Evaluator()
	require.NoError(t, err)
	a, err := e.Evaluate(Query{From: PodRef{"default", "client"}, To: PodRef{"default", "server"}, Port: Port{Name: "http"}})
	require.NoError(t, err)
	assert.Equal(t, Deny, a.Verdict)
	assert.Equal(t, int32(8080), a.Port)
}

func TestLoadForms(t *testing.T) {
	const ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n"
	const pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}]}\nstatus: {podIP: 10.0.0.1}\n"
	cases := []struct {
		name  string
		input string
		pods  int
	}{
		{"single document", ns, 0},
		{"leading separator and comments-only documents", "---\n# nothing\n---\n" + ns + "--- # trailing comment\n" + pod + "---\n", 1},
		{"JSON stream", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default"}}` + "\n" +
			`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"status":{"podIP":"10.0.0.1"}}`, 1},
		{"JSON array", `[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default"}},` +
			`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"status":{"podIP":"10.0.0.1"}}]`, 1},
		{"flow-style YAML", "{apiVersion: v1, kind: Namespace, metadata: {name: default}}\n---\n" +
			"{apiVersion: v1, kind: Pod, metadata: {name: p}, status: {podIP: 10.0.0.1}}\n", 1},
		{"YAML List", "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(ns, "\n", "\n  ") + "\n- " + strings.ReplaceAll(pod, "\n", "\n  "), 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Load(strings.NewReader(tc.input))
			require.NoError(t, err)
			assert.Len(t, s.Namespaces, 1)
			assert.Len(t, s.Pods, tc.pods)
		})
	}
}

// TestLoadBad has one file per error under testdata/bad; each must fail with its
// own message, naming the document, the object and the field.
func TestLoadBad(t *testing.T) {
	cases := map[string][]string{
		"unknown-field.yaml":        {"document 2 (line 6) NetworkPolicy default/typo", `unknown field "spec.podSelecter"`},
		"malformed-selector.yaml":   {"NetworkPolicy default/in-without-values", "spec.podSelector.matchExpressions[0].values: Required value"},
		"bad-operator.yaml":         {"spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].operator", `"Equals": not a valid selector operator`},
		"invalid-label-value.yaml":  {"spec.podSelector.matchLabels", "not a valid value!"},
		"invalid-cidr.yaml":         {"NetworkPolicy default/bad-cidr", `spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.0/33"`},
		"cidr-host-bits.yaml":       {"spec.egress[0].to[0].ipBlock.cidr", "must not have bits set beyond the prefix length"},
		"except-outside.yaml":       {"spec.ingress[0].from[0].ipBlock.except[0]", "must be a strict subset of `cidr`"},
		"unknown-protocol.yaml":     {"spec.ingress[0].ports[0].protocol", `Unsupported value: "ICMP"`},
		"lowercase-protocol.yaml":   {"spec.ingress[0].ports[0].protocol", `Unsupported value: "tcp"`},
		"pod-port-protocol.yaml":    {"Pod default/icmp-pod", "spec.containers[0].ports[0].protocol", `"ICMP"`},
		"missing-podip.yaml":        {"document 2 (line 6) Pod default/pending", "status.podIP: Required value"},
		"invalid-podip.yaml":        {"Pod default/bad-ip", `status.podIP: Invalid value: "10.0.0.300"`},
		"podips-mismatch.yaml":      {"Pod default/mismatch", "status.podIPs[0].ip", "must match status.podIP"},
		"empty-peer.yaml":           {"spec.ingress[0].from[0]: Required value: must specify a peer"},
		"ipblock-and-selector.yaml": {"spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer"},
		"endport-named.yaml":        {"spec.ingress[0].ports[0].endPort", "non-numeric"},
		"endport-below-port.yaml":   {"spec.ingress[0].ports[0].endPort: Invalid value: 8000", "greater than or equal to `port`"},
		"bad-port-name.yaml":        {"spec.ingress[0].ports[0].port", "must contain at least one letter"},
		"bad-policy-type.yaml":      {"spec.policyTypes[0]", `Unsupported value: "Both"`},
		"old-apiversion.yaml":       {"NetworkPolicy old", `apiVersion: Unsupported value: "extensions/v1beta1"`},
		"missing-kind.yaml":         {"document 2 (line 6) what-am-i", "kind: Required value"},
		"missing-name.yaml":         {"NetworkPolicy default/(unnamed)", "metadata.name: Required value"},
		"missing-namespace.yaml":    {"Pod team-a/orphan", "metadata.namespace", "no Namespace team-a in the input"},
		"duplicate.yaml":            {"document 3 (line 13) NetworkPolicy default/twice", "duplicate NetworkPolicy default/twice (first in document 2)"},
		"duplicate-key.yaml":        {"document 2 (line 6)", `line 12: key "podSelector" already set`},
		"unquoted-bool-label.yaml":  {"Pod default/bool-label", "cannot unmarshal bool", "labels"},
		"invalid-yaml.yaml":         {"document 1 (line 1)", "invalid YAML", "line 5"},
		"empty.yaml":                {"no Namespace, Pod, workload or policy objects"},
		"cnp-empty-peer.yaml":       {"document 1 (line 1) ClusterNetworkPolicy no-peer-field", "spec.ingress[0].from[0]: Required value"},
		"cnp-unknown-field.yaml":    {"ClusterNetworkPolicy typo", `unknown field "spec.subject.namespace"`},
		"anp-bad-port.yaml":         {"AdminNetworkPolicy range", `spec.egress[0].to[0].networks[0]: Invalid value: "10.0.0.1/8"`},
		"workload-no-name.yaml":     {"document 2 (line 6) Deployment shop/(unnamed)", "metadata.name: Required value"},
		"foreign-no-name.yaml":      {"GlobalNetworkPolicy (unnamed)", "metadata.name: Required value"},
	}
	files, err := filepath.Glob("testdata/bad/*.yaml")
	require.NoError(t, err)
	require.Len(t, files, len(cases), "every bad file has a case and every case a file")
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			want, ok := cases[name]
			require.True(t, ok, "no expectation for %s", name)
			_, err := LoadFile(f)
			require.Error(t, err)
			for _, w := range want {
				assert.Contains(t, err.Error(), w)
			}
			if name != "empty.yaml" {
				assert.Equal(t, 1, countDocErrors(err), "one problem per file: %s", err)
			}
		})
	}
}

func TestLoadPendingPodWithoutIP(t *testing.T) {
	in := "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n---\n" +
		"apiVersion: v1\nkind: Pod\nmetadata: {name: pending}\nstatus: {phase: Pending}\n---\n" +
		"apiVersion: v1\nkind: Pod\nmetadata: {name: running}\nstatus: {phase: Running, podIP: 10.0.0.1}\n"
	s, err := Load(strings.NewReader(in))
	require.NoError(t, err, "a cluster dump with a pending pod must load")
	e, err := s.Evaluator()
	require.NoError(t, err)
	a, err := e.Evaluate(Query{From: PodRef{"default", "pending"}, To: PodRef{"default", "running"}, Port: Port{Number: 80}})
	require.NoError(t, err)
	assert.Equal(t, Allow, a.Verdict)
	assert.Contains(t, a.Notes, "source pod default/pending has no IP: ipBlock peers cannot match it")

	_, err = Load(strings.NewReader(strings.Replace(in, "phase: Pending", "phase: Running", 1)))
	assert.ErrorContains(t, err, "Pod default/pending: status.podIP: Required value")
}

func TestLoadReportsEveryProblem(t *testing.T) {
	in := "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n---\n" +
		"apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n" +
		"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b}\nspec: {podSelector: {}, ingress: [{ports: [{protocol: ICMP}]}]}\n"
	_, err := Load(strings.NewReader(in))
	require.Error(t, err)
	var des []*DocError
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var de *DocError
		require.ErrorAs(t, e, &de)
		des = append(des, de)
	}
	require.Len(t, des, 2)
	assert.Equal(t, 2, des[0].Doc)
	assert.Equal(t, "Pod", des[0].Kind)
	assert.Equal(t, 3, des[1].Doc)
	assert.Equal(t, 9, des[1].Line)
	assert.Equal(t, "b", des[1].Name)
}

func TestLoadNumbersDocumentsAfterABrokenOne(t *testing.T) {
	in := "# leading comment\n---\napiVersion: v1\nkind: [\n---\n# just a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n"
	_, err := Load(strings.NewReader(in))
	require.Error(t, err)
	var de *DocError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, 1, de.Doc)
	assert.Equal(t, 3, de.Line)
	docs, _ := splitDocuments([]byte(in))
	require.Len(t, docs, 1)
	assert.Equal(t, 2, docs[0].n, "the broken document still counts")
	assert.Equal(t, 8, docs[0].line)
}

func TestLoadFileMissing(t *testing.T) {
	// Not t.TempDir: Wine cannot remove a temp dir, which fails the Windows run.
	_, err := LoadFile(filepath.Join(os.TempDir(), fmt.Sprintf("xosprobe-missing-%d", os.Getpid()), "nope.yaml"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func countDocErrors(err error) int {
	var de *DocError
	if errors.As(err, &de) && de == err { //nolint:errorlint // walks the error tree node by node on purpose
		return 1
	}
	switch u := err.(type) { //nolint:errorlint // as above
	case interface{ Unwrap() []error }:
		n := 0
		for _, e := range u.Unwrap() {
			n += countDocErrors(e)
		}
		return n
	case interface{ Unwrap() error }:
		return countDocErrors(u.Unwrap())
	}
	return 0
}

package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// The shipped DaemonSets must configure an agent that starts: their args and
// downward-API env go through `xosprobe agent --check-config`.
func TestShippedAgentManifestsConfigureAValidAgent(t *testing.T) {
	token := filepath.Join(tempDir(t), "token")
	require.NoError(t, os.WriteFile(token, []byte("t"), 0o600))
	for _, file := range []string{"agent-linux.yaml", "agent-windows.yaml"} {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("..", "..", "manifests", "base", file))
			require.NoError(t, err)
			var ds appsv1.DaemonSet
			require.NoError(t, yaml.UnmarshalStrict(data, &ds))
			c := ds.Spec.Template.Spec.Containers[0]
			env := map[string]string{}
			for _, e := range c.Env {
				require.NotNil(t, e.ValueFrom, "%s comes from the downward API", e.Name)
				env[e.Name] = "from-" + strings.ToLower(e.Name)
			}
			env["POD_IP"] = "10.244.0.9" // parsed: the DNS server is the adapter's carrying it
			for _, name := range []string{"NODE_NAME", "POD_NAME", "POD_NAMESPACE", "POD_IP"} {
				require.Contains(t, env, name)
				t.Setenv(name, env[name])
			}
			osName := ds.Spec.Template.Spec.NodeSelector["kubernetes.io/os"]
			// The token path is the projected volume's; here a local file stands in.
			args := append(append([]string{}, c.Args...), "--check-config", "--os", osName, "--token-file", token)
			out, err := execute(t, args...)
			require.NoError(t, err, out)
			assert.Contains(t, out, "configuration ok: Kubernetes mode, node from-node_name ("+osName+") in from-pod_namespace")

			mounted := false
			for _, m := range c.VolumeMounts {
				mounted = mounted || strings.HasPrefix(flagValue(c.Args, "--token-file"), m.MountPath)
			}
			assert.True(t, mounted, "--token-file lies in a mounted volume")
		})
	}
}

func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

var updateManifests = flag.Bool("update-manifests", false, "rewrite generated manifests (the PrometheusRule) from their sources")

// The PrometheusRule carries exactly the groups of the plain rule file, so
// the alerts are tested once (promtool) and shipped twice.
func TestPrometheusRuleMatchesRuleFile(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join("..", "..", "manifests", "prometheus", "rules.yaml"))
	require.NoError(t, err)
	var groups struct {
		Groups []any `json:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(rules, &groups))
	require.NotEmpty(t, groups.Groups)
	want := map[string]any{
		"apiVersion": "monitoring.coreos.com/v1",
		"kind":       "PrometheusRule",
		"metadata": map[string]any{"name": "xosprobe", "namespace": "xosprobe",
			"labels": map[string]any{"app.kubernetes.io/name": "xosprobe"}},
		"spec": map[string]any{"groups": groups.Groups},
	}
	path := filepath.Join("..", "..", "manifests", "prometheus-operator", "prometheusrule.yaml")
	if *updateManifests {
		out, err := yaml.Marshal(want)
		require.NoError(t, err)
		header := "# Generated from manifests/prometheus/rules.yaml by\n#   go test ./cmd/xosprobe -run PrometheusRule -update-manifests\n# Do not edit; edit rules.yaml.\n"
		require.NoError(t, os.WriteFile(path, append([]byte(header), out...), 0o644))
	}
	data, err := os.ReadFile(path)
	require.NoError(t, err, "generate it with: go test ./cmd/xosprobe -run PrometheusRule -update-manifests")
	var got map[string]any
	require.NoError(t, yaml.Unmarshal(data, &got))
	wantJSON, _ := yaml.Marshal(want)
	var wantBack map[string]any
	require.NoError(t, yaml.Unmarshal(wantJSON, &wantBack))
	assert.Equal(t, wantBack, got, "prometheusrule.yaml is stale: go test ./cmd/xosprobe -run PrometheusRule -update-manifests")
}

// The shipped aggregator Deployment configures an aggregator that starts.
func TestShippedAggregatorManifestConfiguresAValidAggregator(t *testing.T) {
	dir := tempDir(t)
	token := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(token, []byte("t"), 0o600))
	// A kubeconfig that parses; --check-config never contacts the server.
	kubeconfig := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600))
	data, err := os.ReadFile(filepath.Join("..", "..", "manifests", "base", "aggregator.yaml"))
	require.NoError(t, err)
	var dep appsv1.Deployment
	require.NoError(t, yaml.Unmarshal(data, &dep)) // the file's first document
	c := dep.Spec.Template.Spec.Containers[0]
	for _, e := range c.Env {
		t.Setenv(e.Name, "10.244.0.9") // POD_IP matters: it becomes the advertised URL
	}
	args := append(append([]string{}, c.Args...), "--check-config", "--kubeconfig", kubeconfig, "--replica-token-file", token)
	out, err := execute(t, args...)
	require.NoError(t, err, out)
	assert.Contains(t, out, "TokenReview")
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || strings.HasPrefix(flagValue(c.Args, "--replica-token-file"), m.MountPath)
	}
	assert.True(t, mounted, "--replica-token-file lies in a mounted volume")
	assert.EqualValues(t, 2, *dep.Spec.Replicas)
}

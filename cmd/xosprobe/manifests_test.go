package main

import (
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
	for _, doc := range strings.Split(string(data), "\n---\n") {
		if strings.Contains(doc, "\nkind: Deployment\n") {
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &dep))
		}
	}
	require.NotEmpty(t, dep.Spec.Template.Spec.Containers, "aggregator.yaml holds the Deployment")
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

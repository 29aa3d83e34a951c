package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAgentCheckConfig(t *testing.T) {
	peers := filepath.Join(tempDir(t), "peers")
	require.NoError(t, os.WriteFile(peers, []byte("# the Windows side\nwin-1=windows@10.0.0.2:19440\n\nlin-2=linux@10.0.0.3\n"), 0o600))
	out, err := execute(t, "agent", "--check-config", "--node", "lin-1", "--peers-file", peers, "--peer", "win-2=windows@10.0.0.4")
	require.NoError(t, err, out)
	assert.Contains(t, out, "configuration ok: static mode, node lin-1")
	assert.Contains(t, out, "3 peers")
}

func TestAgentConfigErrorsNameTheFlag(t *testing.T) {
	cases := map[string][]string{
		"--node":           {"agent", "--check-config", "--peer", "w=windows@10.0.0.2"},
		"--timeout":        {"agent", "--check-config", "--node", "n", "--peer", "w=windows@10.0.0.2", "--timeout", "20s", "--interval", "10s"},
		"--jitter":         {"agent", "--check-config", "--node", "n", "--peer", "w=windows@10.0.0.2", "--jitter", "2"},
		"os \"mac\"":       {"agent", "--check-config", "--node", "n", "--peer", "w=mac@10.0.0.2"},
		"--peers-file":     {"agent", "--check-config", "--node", "n", "--peers-file", "/nonexistent/peers"},
		"--namespace":      {"agent", "--check-config", "--node", "n"},
		"--service is for": {"agent", "--check-config", "--node", "n", "--namespace", "x", "--service", "linux=10.96.0.1:9440"},
		"--dns-server":     {"agent", "--check-config", "--node", "n", "--peer", "w=windows@10.0.0.2", "--dns-server", "10.96.0.10"},
		"--policy-grace":   {"agent", "--check-config", "--node", "n", "--peer", "w=windows@10.0.0.2", "--policy-grace", "-1s"},
		"--warmup":         {"agent", "--check-config", "--node", "n", "--peer", "w=windows@10.0.0.2", "--warmup", "-1m"},
	}
	for want, args := range cases {
		t.Run(want, func(t *testing.T) {
			t.Setenv("NODE_NAME", "")
			t.Setenv("POD_NAMESPACE", "")
			_, err := execute(t, args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), want)
		})
	}
}

package discovery

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"
)

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr []string // substrings; none means valid
	}{
		{name: "valid", edit: func(*Config) {}},
		{name: "no services is fine", edit: func(c *Config) { c.Services = nil }},
		{name: "no client", edit: func(c *Config) { c.Client = nil }, wantErr: []string{"Client is required"}},
		{
			name:    "identity missing",
			edit:    func(c *Config) { c.Namespace, c.PodName, c.NodeName = "", "", "" },
			wantErr: []string{"Namespace is required", "PodName is required", "NodeName is required"},
		},
		{name: "empty selector", edit: func(c *Config) { c.AgentSelector = " " }, wantErr: []string{"AgentSelector is required"}},
		{name: "bad selector", edit: func(c *Config) { c.AgentSelector = "a in (" }, wantErr: []string{"AgentSelector:"}},
		{
			name:    "bad service name",
			edit:    func(c *Config) { c.Services = map[string]string{"linux": "Not_A_Name"} },
			wantErr: []string{"services[linux]"},
		},
		{
			name:    "OS given twice after lower-casing",
			edit:    func(c *Config) { c.Services = map[string]string{"linux": "a", "Linux": "b"} },
			wantErr: []string{`OS "linux" given twice`},
		},
		{name: "empty OS", edit: func(c *Config) { c.Services = map[string]string{"": "a"} }, wantErr: []string{"empty OS key"}},
		{name: "negative resync", edit: func(c *Config) { c.ResyncPeriod = -1 }, wantErr: []string{"ResyncPeriod"}},
		{name: "negative sync timeout", edit: func(c *Config) { c.SyncTimeout = -time.Second }, wantErr: []string{"SyncTimeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(fake.NewClientset())
			tt.edit(&cfg)
			_, err := New(cfg)
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				assert.Contains(t, err.Error(), want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg := testConfig(fake.NewClientset())
	cfg.Services = map[string]string{"Windows": windowsSvc}
	got, sel, err := cfg.normalized()
	require.NoError(t, err)
	assert.Equal(t, DefaultClusterDomain, got.ClusterDomain)
	assert.Equal(t, DefaultSyncTimeout, got.SyncTimeout)
	assert.NotNil(t, got.Logger)
	assert.Equal(t, map[string]string{"windows": windowsSvc}, got.Services, "OS keys are lower-cased")
	assert.True(t, sel.Matches(labels.Set(agentLabels)))
	assert.False(t, sel.Matches(labels.Set{"app.kubernetes.io/name": "xosprobe"}))
	assert.Equal(t, map[string]string{"Windows": windowsSvc}, cfg.Services, "caller's map is not modified")
}

package main

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"
)

func TestClusterDNSServer(t *testing.T) {
	noClient := func() (kubernetes.Interface, error) {
		t.Error("the API was asked")
		return nil, context.Canceled
	}
	tests := []struct {
		name     string
		explicit string
		kube     kubeFlags
		useAPI   bool
		want     string
		log      string
		err      string
	}{
		{name: "the flag wins and is logged as its source", explicit: "10.96.0.10:53", useAPI: true,
			kube: kubeFlags{podIP: "10.244.0.5", dnsService: "kube-system/kube-dns", client: noClient},
			want: "10.96.0.10:53", log: "source=flag"},
		{name: "a bad flag", explicit: "10.96.0.10", kube: kubeFlags{dnsService: "kube-system/kube-dns"}, err: `--dns-server "10.96.0.10"`},
		{name: "a bad pod IP", kube: kubeFlags{podIP: "10.244.0", dnsService: "kube-system/kube-dns"}, err: `--pod-ip "10.244.0"`},
		{name: "a bad Service name", kube: kubeFlags{dnsService: "kube-dns"}, useAPI: true, err: `--dns-service "kube-dns": want NAMESPACE/NAME`},
		{name: "the Service name is not read without the API", kube: kubeFlags{dnsService: "kube-dns"}, explicit: "10.96.0.10:53", want: "10.96.0.10:53"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			got, err := clusterDNSServer(context.Background(), tt.explicit, &tt.kube, tt.useAPI, slog.New(slog.NewTextHandler(&logs, nil)))
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Contains(t, logs.String(), tt.log)
		})
	}
}

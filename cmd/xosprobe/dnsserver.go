package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/xosprobe/xosprobe/agent/clusterdns"
)

// clusterDNSServer finds the server of the dns step's direct query: explicit
// (--dns-server) wins, then the OS's own configuration (the adapter's DNS
// servers on Windows, /etc/resolv.conf elsewhere), then the DNS Service
// through the API when useAPI (not in static mode). It logs the source. Finding none is
// not an error: the direct query (resolve_direct) is then skipped, and a
// warning says why.
func clusterDNSServer(ctx context.Context, explicit string, kube *kubeFlags, useAPI bool, log *slog.Logger) (string, error) {
	var podIP netip.Addr
	if kube.podIP != "" {
		ip, err := netip.ParseAddr(kube.podIP)
		if err != nil {
			return "", fmt.Errorf("--pod-ip %q: %w", kube.podIP, err)
		}
		podIP = ip
	}
	f := clusterdns.Finder{}
	if useAPI {
		ns, name, ok := strings.Cut(kube.dnsService, "/")
		if !ok || ns == "" || name == "" {
			return "", fmt.Errorf("--dns-service %q: want NAMESPACE/NAME", kube.dnsService)
		}
		f.Service = func(ctx context.Context) (clusterdns.Server, error) {
			client, err := kube.clientset()
			if err != nil {
				return clusterdns.Server{}, err
			}
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return clusterdns.FromService(ctx, client, ns, name)
		}
	}
	s, err := f.Find(ctx, explicit, podIP)
	if explicit != "" && err != nil {
		return "", err
	}
	if err != nil {
		log.Warn("no cluster DNS server found: the dns check's direct query (resolve_direct) is skipped; give --dns-server",
			"reasons", err.Error())
		return "", nil
	}
	log.Info("cluster DNS server", "server", s.Addr, "source", s.Source, "detail", s.Detail)
	return s.Addr, nil
}

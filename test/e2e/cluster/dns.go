package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// corefile serves the cluster domain and the reverse zones from the API, and
// answers NXDOMAIN for everything else: there is no upstream to forward to,
// and a query must never leave the machine.
const corefile = `%[1]s:53 in-addr.arpa:53 ip6.arpa:53 {
    errors
    ready :8181
    health :8080
    kubernetes %[1]s in-addr.arpa ip6.arpa {
        kubeconfig %[2]s
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
}
.:53 {
    errors
    template ANY ANY {
        rcode NXDOMAIN
    }
}
`

// StartDNS runs CoreDNS the way a cluster does: a kube-system pod labelled
// k8s-app=kube-dns on node (a Linux node, as in real mixed clusters), behind
// the kube-dns Service at DNSServiceIP that every pod's resolv.conf names.
// It returns when CoreDNS reports ready (its kubernetes plugin synced). On a
// kubelet node the kubelet runs it (StartDNS then returns a nil Pod).
func (c *Cluster) StartDNS(ctx context.Context, node *Node) (*Pod, error) {
	if node.Kubelet != nil {
		return nil, c.startKubeletDNS(ctx, node.Kubelet)
	}
	start := time.Now()
	const ns = metav1.NamespaceSystem
	pod, err := c.CreatePod(ctx, node, PodSpec{
		Namespace: ns, Name: "coredns",
		Labels: map[string]string{"k8s-app": "kube-dns"},
		Ports: []corev1.ContainerPort{
			{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
			{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
		},
	})
	if err != nil {
		return nil, err
	}
	path := filepath.Join(c.cfg.WorkDir, "Corefile")
	if err := os.WriteFile(path, fmt.Appendf(nil, corefile, ClusterDomain, c.CP.Kubeconfig), 0o644); err != nil {
		return nil, err
	}
	proc, err := c.Exec(ctx, pod, ExecSpec{Args: []string{filepath.Join(c.cfg.BinDir, "coredns"), "-conf", path}})
	if err != nil {
		return nil, err
	}
	if err := c.createDNSService(ctx); err != nil {
		return nil, err
	}
	url := fmt.Sprintf("http://%s:8181/ready", pod.IP)
	if err := waitFor(ctx, proc, time.Minute, "coredns ready", func(ctx context.Context) error {
		return httpGetOK(ctx, url)
	}); err != nil {
		return nil, err
	}
	c.log.Info("dns ready", "pod", pod.key(), "ip", pod.IP, "service", DNSServiceIP, "elapsed", time.Since(start).Round(time.Millisecond))
	return pod, nil
}

func (c *Cluster) createDNSService(ctx context.Context) error {
	const ns = metav1.NamespaceSystem
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: ns, Labels: map[string]string{"k8s-app": "kube-dns"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: DNSServiceIP.String(),
			Selector:  map[string]string{"k8s-app": "kube-dns"},
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString("dns")},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("dns-tcp")},
			},
		},
	}
	if _, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// coreDNSImage is the image StartDNS imports into a kubelet node: the
// build.sh binary alone.
const coreDNSImage = "xosprobe-e2e.local/coredns:1"

// startKubeletDNS runs CoreDNS as clusters do, as a pod the node's kubelet
// runs from an image: ServiceAccount coredns with the upstream ClusterRole's
// read access, the Corefile in a ConfigMap, in-cluster config (no
// kubeconfig), root with only NET_BIND_SERVICE for port 53, as upstream's
// manifest. A harness pod there would also be run by the kubelet, which
// owns every pod bound to its node.
func (c *Cluster) startKubeletDNS(ctx context.Context, k *Kubelet) error {
	start := time.Now()
	const ns = metav1.NamespaceSystem
	bin, err := os.ReadFile(filepath.Join(c.cfg.BinDir, "coredns"))
	if err != nil {
		return err
	}
	tar := filepath.Join(k.Dir, "images", "coredns.oci.tar")
	if err := WriteImageFile(tar, ImageSpec{
		Ref:        coreDNSImage,
		Files:      []ImageFile{{Path: "/coredns", Mode: 0o755, Data: bin}},
		Entrypoint: []string{"/coredns"},
	}); err != nil {
		return err
	}
	if err := k.ImportImage(ctx, tar); err != nil {
		return err
	}
	// In-cluster: the kubernetes plugin without a kubeconfig reads the pod's
	// ServiceAccount mount.
	corefile := strings.Replace(fmt.Sprintf(corefile, ClusterDomain, ""), "        kubeconfig \n", "", 1)
	labels := map[string]string{"k8s-app": "kube-dns"}
	create := []func() error{
		func() error {
			_, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "coredns"}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
				ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"},
				Rules: []rbacv1.PolicyRule{
					{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
					{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
				},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:coredns"},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "coredns"}},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: "coredns"},
				Data:       map[string]string{"Corefile": corefile},
			}, metav1.CreateOptions{})
			return err
		},
		func() error { return c.createDNSService(ctx) },
		func() error {
			_, err := c.Client.CoreV1().Pods(ns).Create(ctx, coreDNSPod(k.Node.Name, labels), metav1.CreateOptions{})
			return err
		},
	}
	for _, f := range create {
		if err := f(); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("coredns on %s: %w", k.Node.Name, err)
		}
	}
	if err := waitFor(ctx, k.Process, 2*time.Minute, "coredns pod Ready on "+k.Node.Name, func(ctx context.Context) error {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("phase %s, container statuses %+v", p.Status.Phase, p.Status.ContainerStatuses)
	}); err != nil {
		return err
	}
	c.log.Info("dns ready", "pod", ns+"/coredns", "node", k.Node.Name, "service", DNSServiceIP, "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

func coreDNSPod(node string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: metav1.NamespaceSystem, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:           node,
			ServiceAccountName: "coredns",
			DNSPolicy:          corev1.DNSDefault,
			Containers: []corev1.Container{{
				Name:            "coredns",
				Image:           coreDNSImage,
				ImagePullPolicy: corev1.PullNever, // imported, no registry
				Args:            []string{"-conf", "/etc/coredns/Corefile"},
				Ports: []corev1.ContainerPort{
					{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
					{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
				},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8181)}},
					PeriodSeconds: 1,
				},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					ReadOnlyRootFilesystem:   ptr.To(true),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE"}},
					SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/coredns", ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
				ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "coredns"}},
			}}},
		},
	}
}

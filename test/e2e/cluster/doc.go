// Package cluster is the xosprobe end-to-end harness: a mixed Windows/Linux
// Kubernetes cluster in one machine, built from real components and network
// namespaces instead of VMs or containers.
//
// The control plane is real: etcd, kube-apiserver and kube-controller-manager
// (namespace, serviceaccount, endpointslice, garbage-collector, ... — see
// controllers) built from the Go module proxy by ../build.sh. There is no
// kubelet and no container runtime: the harness plays the kubelet. A node is a
// network namespace with a bridge and a Ready Node object; a pod is a network
// namespace with a veth on its node's bridge, an address from the node's pod
// CIDR, and a Pod object whose status the harness sets (Running, Ready, podIP,
// hostIP). Workloads run inside pods with ip netns exec; Windows workloads run
// under Wine, each pod with its own wineserver.
//
//	host (root netns)              node netns (one per node)         pod netns
//	xne2e-br0 10.240.0.1 ──veth──  eth0 10.240.0.1x                  eth0 10.244.i.x
//	  kube-apiserver, etcd,        cbr0 10.244.i.1 ──veth (vpN)────  default via 10.244.i.1
//	  kube-controller-manager      kube-proxy (iptables mode)        resolv.conf from /etc/netns
//	                               kube-router NPC (Linux nodes)
//
// Every node runs its own kube-proxy in its own namespace, so Service VIPs
// are real iptables DNAT on the path of the pod's packets, and every Linux
// node runs kube-router's network policy controller, which enforces
// NetworkPolicy for exactly the pods whose hostIP is that node's IP. Windows
// nodes have no enforcer: policies do not apply to Windows pods, as in
// clusters whose Windows CNI does not implement them. One namespace per node
// is what makes this work: kube-router instances sharing one filter table
// delete each other's pod chains (cleanupStaleRules removes every
// KUBE-POD-FW-* chain not in its own set).
//
// CoreDNS runs as the kube-system/coredns pod behind the kube-dns Service
// (10.96.0.10) with the kubernetes plugin; Linux pods get the kubelet's
// ClusterFirst resolv.conf, Windows pods Windows' single DNS suffix.
//
// Everything on the host is named with a prefix (default "xne2e") and
// removed by Teardown, and by Sweep at the next Start if a run crashed; see
// host.go for the list. Child processes die with the test process
// (PR_SET_PDEATHSIG). A host lock serializes clusters on one machine.
//
// Typical use (see ../smoke_test.go):
//
//	c, _ := cluster.New(cluster.Config{BinDir: bin, WorkDir: t.TempDir(), NetworkPolicy: true})
//	defer c.Teardown()
//	c.Start(ctx)
//	n, _ := c.CreateNode(ctx, "lin-1", cluster.Linux, "")
//	c.StartDNS(ctx, n)
//	p, _ := c.CreatePod(ctx, n, cluster.PodSpec{Name: "a", Labels: ...})
//	c.Exec(ctx, p, cluster.ExecSpec{Args: []string{"bin/xosprobe", "serve"}})
package cluster

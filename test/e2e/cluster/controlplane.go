package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Component names a control-plane process, for Restart.
type Component string

// The control-plane components.
const (
	Etcd                  Component = "etcd"
	KubeAPIServer         Component = "kube-apiserver"
	KubeControllerManager Component = "kube-controller-manager"
	KubeScheduler         Component = "kube-scheduler"
)

// controllers are the kube-controller-manager controllers the harness needs:
// the ones that turn Services and Pods into EndpointSlices, keep namespaces
// and service accounts working, and collect what owners leave behind. Node
// lifecycle stays off: there is no kubelet heartbeat, the harness owns node
// and pod status.
var controllers = []string{
	"namespace-controller", "serviceaccount-controller", "serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller", "endpointslice-controller",
	"endpointslice-mirroring-controller", "endpoints-controller", "garbage-collector-controller",
	"service-cidr-controller",
}

// workloadControllers are added with ControlPlane.Workloads: the controllers
// that turn DaemonSets and Deployments into pods and keep PodDisruptionBudgets'
// status, as in a cluster. Off otherwise, so they never fight the pods the
// harness places itself from the same templates.
var workloadControllers = []string{
	"daemonset-controller", "deployment-controller", "replicaset-controller", "disruption-controller",
}

// ControlPlane runs etcd, kube-apiserver, kube-controller-manager and, with
// Workloads, kube-scheduler as child processes. Fill in the exported
// configuration fields, then Start.
type ControlPlane struct {
	// BinDir holds etcd, kube-apiserver and kube-controller-manager.
	BinDir string
	// BindAddress is where kube-apiserver listens (default 127.0.0.1). The
	// Cluster uses HostIP so pods reach it through the kubernetes Service.
	BindAddress netip.Addr
	// PIDDir, when set, records each process for Sweep.
	PIDDir string
	// Workloads runs workloads as a cluster does: kube-scheduler, the
	// DaemonSet, Deployment, ReplicaSet and disruption controllers, and the
	// ServiceAccount admission plugin (pods get the kube-api-access volume
	// that in-cluster clients read). Pods the harness creates itself must
	// then name a ServiceAccount that exists.
	Workloads bool
	Logger    *slog.Logger

	// Set by Start.
	Dir        string
	PKI        *PKI
	Kubeconfig string       // admin kubeconfig (system:masters client certificate)
	Server     string       // https://BindAddress:port
	REST       *rest.Config // admin
	Client     kubernetes.Interface

	procs         map[Component]*Process
	etcdURL       string
	apiPort       int
	schedulerPort int
}

// Start generates the PKI under dir, starts the three components and waits
// until the apiserver is ready and the controller-manager has created the
// default ServiceAccount. On failure it stops what it started.
func (cp *ControlPlane) Start(ctx context.Context, dir string) (err error) {
	if !cp.BindAddress.IsValid() {
		cp.BindAddress = netip.MustParseAddr("127.0.0.1")
	}
	if cp.Logger == nil {
		cp.Logger = slog.New(slog.DiscardHandler)
	}
	cp.Dir = dir
	cp.procs = map[Component]*Process{}
	defer func() {
		if err != nil {
			_ = cp.Stop()
		}
	}()
	ips := []net.IP{net.IPv4(127, 0, 0, 1), KubernetesServiceIP.AsSlice(), cp.BindAddress.AsSlice()}
	if cp.PKI, err = generatePKI(filepath.Join(dir, "pki"), ips); err != nil {
		return err
	}
	ports, err := freePorts("127.0.0.1", 2)
	if err != nil {
		return err
	}
	etcdPort, peerPort := ports[0], ports[1]
	if cp.apiPort, err = freePort(cp.BindAddress.String()); err != nil {
		return err
	}
	if cp.schedulerPort, err = freePort("127.0.0.1"); err != nil {
		return err
	}
	cp.etcdURL = "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	cp.Server = "https://" + net.JoinHostPort(cp.BindAddress.String(), strconv.Itoa(cp.apiPort))
	if err := cp.writeKubeconfig(); err != nil {
		return err
	}

	if err := cp.issueKubeletClientCert(); err != nil {
		return err
	}
	start := time.Now()
	if err := cp.start(Etcd, []string{
		"--name=default", "--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + cp.etcdURL, "--advertise-client-urls=" + cp.etcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		// A throwaway test store: fsync only costs time.
		"--unsafe-no-fsync", "--log-level=warn",
	}); err != nil {
		return err
	}
	if err := cp.waitEtcd(ctx); err != nil {
		return err
	}
	if err := cp.startAPIServer(ctx); err != nil {
		return err
	}
	if err := cp.startControllerManager(ctx); err != nil {
		return err
	}
	if cp.Workloads {
		if err := cp.start(KubeScheduler, cp.schedulerArgs()); err != nil {
			return err
		}
		if err := cp.waitScheduler(ctx); err != nil {
			return err
		}
	}
	cp.Logger.Info("control plane ready", "server", cp.Server, "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

func (cp *ControlPlane) apiServerArgs() []string {
	p := cp.PKI
	disabled := "ServiceAccount,TaintNodesByCondition,DefaultStorageClass,StorageObjectInUseProtection,PersistentVolumeClaimResize"
	if cp.Workloads {
		disabled = strings.TrimPrefix(disabled, "ServiceAccount,")
	}
	return []string{
		"--etcd-servers=" + cp.etcdURL,
		"--bind-address=" + cp.BindAddress.String(),
		"--advertise-address=" + cp.BindAddress.String(),
		"--secure-port=" + strconv.Itoa(cp.apiPort),
		"--cert-dir=" + filepath.Join(cp.Dir, "apiserver"),
		"--tls-cert-file=" + p.ServerCert, "--tls-private-key-file=" + p.ServerKey,
		"--client-ca-file=" + p.CACert,
		"--service-cluster-ip-range=" + ServiceNetwork.String(),
		"--service-account-issuer=https://kubernetes.default.svc." + ClusterDomain,
		"--service-account-key-file=" + p.SAPub,
		"--service-account-signing-key-file=" + p.SAKey,
		"--api-audiences=https://kubernetes.default.svc." + ClusterDomain,
		"--authorization-mode=Node,RBAC",
		// The harness creates pods itself, before the serviceaccount controller
		// may have made the namespace's "default" account; the ServiceAccount
		// admission plugin would reject them. Pods that need a token name
		// their account and get it through TokenRequest. With Workloads the
		// plugin runs: kubelets mount the kube-api-access volume it adds.
		"--disable-admission-plugins=" + disabled,
		// Real kubelets (CreateKubeletNode) serve exec and logs: dial a
		// node's InternalIP (node names do not resolve on this host) and
		// present a client certificate of the cluster CA.
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--kubelet-client-certificate=" + p.KubeletClientCert,
		"--kubelet-client-key=" + p.KubeletClientKey,
		// The apiserver would publish its own address as the kubernetes
		// Service endpoint and fight the harness; the Cluster writes it.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
		// Unbounded, a graceful stop waits for the watchers (kube-proxy,
		// kube-router, CoreDNS, the controller-manager) and Restart hits the
		// SIGKILL 10 s later; bounded, Restart takes ~3.5 s.
		"--shutdown-watch-termination-grace-period=1s",
	}
}

func (cp *ControlPlane) startAPIServer(ctx context.Context) error {
	if err := cp.start(KubeAPIServer, cp.apiServerArgs()); err != nil {
		return err
	}
	return cp.waitAPIServer(ctx)
}

func (cp *ControlPlane) startControllerManager(ctx context.Context) error {
	if err := cp.start(KubeControllerManager, []string{
		"--kubeconfig=" + cp.Kubeconfig,
		"--controllers=" + strings.Join(cp.controllers(), ","),
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + cp.PKI.SAKey,
		"--root-ca-file=" + cp.PKI.CACert,
		"--leader-elect=false",
		"--secure-port=0", // no metrics/healthz listener to collide with others
		// Tests create and change objects in bursts; sync EndpointSlices
		// without the default batching delay.
		"--endpointslice-updates-batch-period=0s",
	}); err != nil {
		return err
	}
	return cp.waitControllerManager(ctx)
}

func (cp *ControlPlane) controllers() []string {
	if cp.Workloads {
		return append(append([]string(nil), controllers...), workloadControllers...)
	}
	return controllers
}

func (cp *ControlPlane) schedulerArgs() []string {
	return []string{
		"--kubeconfig=" + cp.Kubeconfig,
		"--authentication-kubeconfig=" + cp.Kubeconfig,
		"--authorization-kubeconfig=" + cp.Kubeconfig,
		"--leader-elect=false",
		// Its healthz on a port of the loopback only: waitScheduler reads it.
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(cp.schedulerPort),
	}
}

// waitScheduler waits for kube-scheduler's /readyz (its informers synced).
func (cp *ControlPlane) waitScheduler(ctx context.Context) error {
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // its self-signed serving cert on loopback
	url := "https://127.0.0.1:" + strconv.Itoa(cp.schedulerPort) + "/readyz"
	return waitFor(ctx, cp.procs[KubeScheduler], time.Minute, "kube-scheduler ready", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := insecure.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	})
}

func (cp *ControlPlane) start(c Component, args []string) error {
	argv := append([]string{filepath.Join(cp.BinDir, string(c))}, args...)
	p, err := startProcess(string(c), filepath.Join(cp.Dir, "logs", string(c)+".log"), cp.PIDDir, os.Environ(), argv)
	if err != nil {
		return err
	}
	cp.procs[c] = p
	return nil
}

// Process returns the running process of component c, or nil.
func (cp *ControlPlane) Process(c Component) *Process { return cp.procs[c] }

// Restart stops component c and starts it again with the same flags, then
// waits until it is ready. The apiserver keeps its port, so clients and
// watches reconnect on their own.
func (cp *ControlPlane) Restart(ctx context.Context, c Component) error {
	p := cp.procs[c]
	if p == nil {
		return fmt.Errorf("restart %s: not running", c)
	}
	if err := p.Stop(); err != nil {
		return err
	}
	if err := cp.start(c, p.argv[1:]); err != nil {
		return err
	}
	switch c {
	case Etcd:
		return cp.waitEtcd(ctx)
	case KubeAPIServer:
		return cp.waitAPIServer(ctx)
	case KubeScheduler:
		return cp.waitScheduler(ctx)
	default:
		return cp.waitControllerManager(ctx)
	}
}

// Stop stops the components in reverse order and waits for them to exit.
func (cp *ControlPlane) Stop() error {
	var errs []error
	for _, c := range []Component{KubeScheduler, KubeControllerManager, KubeAPIServer, Etcd} {
		if p := cp.procs[c]; p != nil {
			errs = append(errs, p.Stop())
			delete(cp.procs, c)
		}
	}
	return errors.Join(errs...)
}

func (cp *ControlPlane) writeKubeconfig() error {
	cp.Kubeconfig = filepath.Join(cp.Dir, "admin.kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: cp.Server, CertificateAuthority: cp.PKI.CACert}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificate: cp.PKI.AdminCert, ClientKey: cp.PKI.AdminKey}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "admin"}
	cfg.CurrentContext = "e2e"
	if err := clientcmd.WriteToFile(*cfg, cp.Kubeconfig); err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 100, 200 // the harness is the only heavy client
	cp.REST = rc
	cp.Client, err = kubernetes.NewForConfig(rc)
	return err
}

// waitFor polls check every 100 ms until it succeeds, ctx ends, the timeout
// passes or process p exits (then the error carries the tail of its log).
func waitFor(ctx context.Context, p *Process, timeout time.Duration, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		if p != nil {
			if done, err := p.Exited(); done {
				return fmt.Errorf("%s: %s exited (%v); log tail:\n%s", what, p.Name, err, p.LogTail(3000))
			}
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("%s: %v (last error: %v)", what, ctx.Err(), last)
			if p != nil {
				msg += "; log tail:\n" + p.LogTail(3000)
			}
			return errors.New(msg)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (cp *ControlPlane) waitEtcd(ctx context.Context) error {
	return waitFor(ctx, cp.procs[Etcd], time.Minute, "etcd ready", func(ctx context.Context) error {
		return httpGetOK(ctx, cp.etcdURL+"/health")
	})
}

func (cp *ControlPlane) waitAPIServer(ctx context.Context) error {
	return waitFor(ctx, cp.procs[KubeAPIServer], 2*time.Minute, "kube-apiserver ready", func(ctx context.Context) error {
		_, err := cp.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
}

// waitControllerManager waits for the serviceaccount controller to have made
// the default account, which shows the controller-manager reached the
// apiserver and runs its controllers.
func (cp *ControlPlane) waitControllerManager(ctx context.Context) error {
	return waitFor(ctx, cp.procs[KubeControllerManager], time.Minute, "kube-controller-manager ready", func(ctx context.Context) error {
		_, err := cp.Client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return errors.New("no default ServiceAccount yet")
		}
		return err
	})
}

func freePort(host string) (int, error) {
	ports, err := freePorts(host, 1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// freePorts asks the kernel for n distinct free TCP ports on host. They are
// free when this returns, not reserved: the components bind them a moment
// later, which is good enough on a test machine.
func freePorts(host string, n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

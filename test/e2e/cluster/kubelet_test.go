package cluster

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// These tests need neither root nor the cluster binaries.

func TestUpperHalf(t *testing.T) {
	for _, tc := range []struct {
		prefix, first, last, err string
	}{
		{prefix: "10.244.1.0/24", first: "10.244.1.128", last: "10.244.1.254"},
		{prefix: "10.244.0.0/23", first: "10.244.1.0", last: "10.244.1.254"},
		{prefix: "10.244.3.8/29", first: "10.244.3.12", last: "10.244.3.14"},
		{prefix: "10.244.3.8/30", err: "want an IPv4 prefix of /29 or larger"},
		{prefix: "fd00::/64", err: "want an IPv4 prefix"},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			first, last, err := upperHalf(netip.MustParsePrefix(tc.prefix))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || first.String() != tc.first || last.String() != tc.last {
				t.Fatalf("upperHalf = %s, %s, %v; want %s, %s", first, last, err, tc.first, tc.last)
			}
		})
	}
}

func TestCRIPluginStatus(t *testing.T) {
	for _, tc := range []struct {
		name, out, err string
	}{
		{"ok", "TYPE ID PLATFORMS STATUS\nio.containerd.grpc.v1 cri linux/amd64 ok\n", ""},
		{"failed", "io.containerd.grpc.v1 cri linux/amd64 error\n", `CRI plugin is "error"`},
		{"absent", "io.containerd.grpc.v1 containers - ok\n", "no CRI plugin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := criPluginStatus(tc.out)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("criPluginStatus = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestKubeletNodeReady(t *testing.T) {
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue}
	notReady := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady", Message: "CNI not ready"}
	kubelet := corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", ContainerRuntimeVersion: "containerd://v2.4.2"}
	harness := corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", ContainerRuntimeVersion: "xosprobe-e2e://0"}
	for _, tc := range []struct {
		name string
		info corev1.NodeSystemInfo
		cond []corev1.NodeCondition
		err  string
	}{
		{"ready", kubelet, []corev1.NodeCondition{ready}, ""},
		{"not ready says why", kubelet, []corev1.NodeCondition{notReady}, "Ready False: KubeletNotReady: CNI not ready"},
		{"harness status is not a kubelet's", harness, []corev1.NodeCondition{ready}, "no kubelet has reported"},
		{"no condition", kubelet, nil, "no Ready condition"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Status: corev1.NodeStatus{NodeInfo: tc.info, Conditions: tc.cond}}
			err := kubeletNodeReady(n)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("kubeletNodeReady = %v, want %q", err, tc.err)
			}
		})
	}
}

func testKubelet() *Kubelet {
	c := &Cluster{cfg: Config{Prefix: "xne2e", BinDir: "/bin", WorkDir: "/w"}}
	c.CP = &ControlPlane{PKI: &PKI{CACert: "/w/pki/ca.crt"}}
	n := &Node{Name: "klin-1", IP: netip.MustParseAddr("10.240.0.11"), PodCIDR: netip.MustParsePrefix("10.244.1.0/24"),
		Gateway: netip.MustParseAddr("10.244.1.1"), c: c}
	cfg := KubeletConfig{}
	cfg.defaults()
	return &Kubelet{Node: n, Dir: "/w/kubelet/klin-1", CgroupRoot: "/xne2e-kubelet-klin-1", SandboxImage: "xosprobe-e2e.local/pause:klin-1", c: c, cfg: cfg}
}

// The configs are generated text: check they parse and say what the host
// needs, so a typo fails here rather than as a kubelet that will not start.
func TestKubeletConfigs(t *testing.T) {
	k := testKubelet()

	var kc map[string]any
	if err := yaml.Unmarshal([]byte(k.kubeletConfig(kubeletPKI{servingCert: "/s.crt", servingKey: "/s.key"})), &kc); err != nil {
		t.Fatalf("kubelet config: %v", err)
	}
	for key, want := range map[string]any{
		"kind":                     "KubeletConfiguration",
		"failCgroupV1":             false,
		"cgroupDriver":             "cgroupfs",
		"cgroupRoot":               "/xne2e-kubelet-klin-1",
		"address":                  "10.240.0.11",
		"port":                     float64(KubeletPort),
		"containerRuntimeEndpoint": "unix:///w/kubelet/klin-1/containerd/containerd.sock",
		"failSwapOn":               false,
		"protectKernelDefaults":    false,
		"readOnlyPort":             float64(0),
	} {
		if kc[key] != want {
			t.Errorf("kubelet config %s = %#v, want %#v", key, kc[key], want)
		}
	}
	if ev := kc["evictionHard"].(map[string]any); ev["nodefs.available"] != "1%" {
		t.Errorf("evictionHard %v", ev)
	}

	var cni struct {
		Plugins []struct {
			Type   string `json:"type"`
			Bridge string `json:"bridge"`
			IPAM   struct {
				Ranges [][]map[string]string `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	text, err := k.cniConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(text), &cni); err != nil {
		t.Fatalf("CNI config: %v\n%s", err, text)
	}
	r := cni.Plugins[0].IPAM.Ranges[0][0]
	if cni.Plugins[0].Bridge != "cbr0" || r["subnet"] != "10.244.1.0/24" || r["rangeStart"] != "10.244.1.128" || r["gateway"] != "10.244.1.1" {
		t.Errorf("CNI config: bridge %q range %v", cni.Plugins[0].Bridge, r)
	}

	toml := k.containerdConfig()
	for _, want := range []string{
		`sandbox = "xosprobe-e2e.local/pause:klin-1"`,
		`BinaryName = "/usr/sbin/runc"`,
		`address = "/w/kubelet/klin-1/containerd/containerd.sock"`,
		`netns_mounts_under_state_dir = true`,
		`restrict_oom_score_adj = true`,
		`conf_dir = "/w/kubelet/klin-1/cni/net.d"`,
	} {
		if !strings.Contains(toml, want) {
			t.Errorf("containerd config lacks %s:\n%s", want, toml)
		}
	}
}

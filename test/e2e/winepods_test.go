package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/xosprobe/xosprobe/test/e2e/cluster"
)

// The ServiceAccount volume a kubelet mounts into every container that does
// not opt out, at the path client-go's in-cluster config reads (on Windows,
// on the container's C: drive).
const serviceAccountDir = `C:\var\run\secrets\kubernetes.io\serviceaccount`

// kubeletWineVolumes is wineVolumes for a pod the test creates from tmpl.
func kubeletWineVolumes(t *testing.T, ctx context.Context, c *cluster.Cluster, p *cluster.Pod, tmpl *corev1.PodTemplateSpec) []string {
	t.Helper()
	written, err := wineVolumes(ctx, c, p, &tmpl.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return written
}

// wineVolumes plays the kubelet's volume mounts for a Windows pod under
// Wine: files go into the pod's C: drive, where a Windows kubelet mounts
// them, never read through a host path. It writes every projected volume the
// container mounts (serviceAccountToken, configMap and downwardAPI
// metadata.namespace sources: the ServiceAccount admission plugin's
// kube-api-access volume and the manifests' audience-bound token) and, when
// the pod has no ServiceAccount mount and does not opt out, the token, CA and
// namespace a kubelet mounts at the path client-go's in-cluster config reads.
// Any other volume is an error: a pod the harness could not start as the
// kubelet would must not start at all.
func wineVolumes(ctx context.Context, c *cluster.Cluster, p *cluster.Pod, spec *corev1.PodSpec) ([]string, error) {
	obj, err := c.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	sa := spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	// Bound to the pod, as the kubelet's tokens are.
	token := func(audiences []string, expiry *int64) ([]byte, error) {
		if expiry == nil {
			expiry = ptr.To[int64](3600)
		}
		tr, err := c.Client.CoreV1().ServiceAccounts(p.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: expiry,
				BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: obj.UID}},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("pod %s: token for ServiceAccount %s: %w", p, sa, err)
		}
		return []byte(tr.Status.Token), nil
	}
	var written []string
	write := func(win string, data []byte) error {
		if err := c.WriteWineFile(p, win, data); err != nil {
			return err
		}
		written = append(written, win)
		return nil
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	saMounted := false
	for _, m := range spec.Containers[0].VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			return nil, fmt.Errorf("pod %s: volumeMount %s names no volume", p, m.Name)
		}
		if v.Projected == nil {
			return nil, fmt.Errorf("pod %s: volume %s: only projected volumes are mounted by the test's Windows kubelet", p, v.Name)
		}
		dir := windowsPath(m.MountPath)
		if strings.EqualFold(dir, serviceAccountDir) {
			saMounted = true
		}
		for _, src := range v.Projected.Sources {
			switch {
			case src.ServiceAccountToken != nil:
				st := src.ServiceAccountToken
				var aud []string
				if st.Audience != "" {
					aud = []string{st.Audience}
				}
				tok, err := token(aud, st.ExpirationSeconds)
				if err != nil {
					return nil, err
				}
				if err := write(dir+`\`+windowsPath(st.Path), tok); err != nil {
					return nil, err
				}
			case src.ConfigMap != nil:
				cm, err := c.Client.CoreV1().ConfigMaps(p.Namespace).Get(ctx, src.ConfigMap.Name, metav1.GetOptions{})
				if err != nil {
					return nil, fmt.Errorf("pod %s: volume %s: %w", p, v.Name, err)
				}
				for _, it := range src.ConfigMap.Items {
					data, ok := cm.Data[it.Key]
					if !ok {
						return nil, fmt.Errorf("pod %s: volume %s: ConfigMap %s has no key %s", p, v.Name, cm.Name, it.Key)
					}
					if err := write(dir+`\`+windowsPath(it.Path), []byte(data)); err != nil {
						return nil, err
					}
				}
			case src.DownwardAPI != nil:
				for _, it := range src.DownwardAPI.Items {
					if it.FieldRef == nil || it.FieldRef.FieldPath != "metadata.namespace" {
						return nil, fmt.Errorf("pod %s: volume %s: downwardAPI item %s: only metadata.namespace is mounted by the test's Windows kubelet", p, v.Name, it.Path)
					}
					if err := write(dir+`\`+windowsPath(it.Path), []byte(p.Namespace)); err != nil {
						return nil, err
					}
				}
			default:
				return nil, fmt.Errorf("pod %s: volume %s: a projected source the test's Windows kubelet does not mount", p, v.Name)
			}
		}
	}
	if am := spec.AutomountServiceAccountToken; !saMounted && (am == nil || *am) {
		ca, err := os.ReadFile(c.CP.PKI.CACert)
		if err != nil {
			return nil, err
		}
		tok, err := token(nil, nil)
		if err != nil {
			return nil, err
		}
		for name, data := range map[string][]byte{"token": tok, "ca.crt": ca, "namespace": []byte(p.Namespace)} {
			if err := write(serviceAccountDir+`\`+name, data); err != nil {
				return nil, err
			}
		}
	}
	sort.Strings(written)
	return written, nil
}

// windowsPath turns a mount path as a Windows kubelet reads it (a Linux-style
// absolute path means the same path on C:) into a C:\ path.
func windowsPath(p string) string {
	p = strings.ReplaceAll(p, "/", `\`)
	if strings.HasPrefix(p, `\`) {
		p = "C:" + p
	}
	return strings.TrimRight(p, `\`)
}

// wineNoHostRoot proves that no Windows pod's Wine opens a Linux host path:
// from inside each Windows agent pod, xosprobe.exe itself tries to open each
// path (agent --check-config --peers-file PATH fails with "--peers-file: open
// PATH" exactly when the open fails). The pod's aggregator token must open,
// or the probe could not tell an open from a failure.
func wineNoHostRoot(t *testing.T, ctx context.Context, c *cluster.Cluster, agents []mixedPod, r *result) {
	const hostFile = "/etc/hostname"
	if _, err := os.Stat(hostFile); err != nil {
		t.Fatalf("the host lacks %s, the file the pods must not reach: %v", hostFile, err)
	}
	repoFile, _ := filepath.Abs("../../go.mod")
	hostPaths := []string{
		`Z:\etc\hostname`,                                   // Wine's default drive for /
		`\\?\unix\etc\hostname`,                             // Wine's NT namespace for Unix paths
		`/etc/hostname`,                                     // the current drive's root
		`\\?\unix\proc\1\root\etc\hostname`,                 // the host's root through init's /proc entry
		`\\?\unix` + strings.ReplaceAll(repoFile, "/", `\`), // the work tree
	}
	const control = `C:\var\run\secrets\xosprobe\token`
	open := func(p *cluster.Pod, path string) (bool, string, error) {
		out, _ := c.Run(ctx, p, cluster.ExecSpec{Wine: true, Name: "open-probe",
			Args: []string{`C:\xosprobe\xosprobe.exe`, "agent", "--check-config", "--node", "open-probe", "--peers-file", path}})
		out = strings.TrimSpace(out)
		if strings.Contains(out, "--peers-file: open "+path) {
			return false, out, nil
		}
		if strings.Contains(out, `peer "`) {
			return true, out, nil // opened, then its content was no peer list
		}
		return false, out, fmt.Errorf("cannot tell whether %s opened: %q", path, out)
	}
	pods := 0
	for _, a := range agents {
		if a.os != cluster.Windows {
			continue
		}
		pods++
		if opened, out, err := open(a.pod, control); err != nil || !opened {
			t.Fatalf("%s: control %s did not open (%v): %s", a.pod, control, err, out)
		}
		for _, path := range hostPaths {
			opened, out, err := open(a.pod, path)
			switch {
			case err != nil:
				t.Error(err)
			case opened:
				t.Errorf("%s: Wine opened the host's %s: %s", a.pod, path, out)
			default:
				t.Logf("%s: %s not opened: %s", a.pod, path, out)
			}
		}
	}
	if pods == 0 {
		t.Fatal("no Windows agent pods")
	}
	r.Figure("%d Windows pods x %d host paths, none opened (control %s opened)", pods, len(hostPaths), control)
}

// windowsDNSDirect checks that every Windows agent, given no --dns-server,
// found the cluster DNS server itself and measured resolve_direct.
func windowsDNSDirect(t *testing.T, ctx context.Context, agents []mixedPod, r *result) {
	want := map[string]string{"check": "dns", "phase": "resolve_direct", "src_os": "windows"}
	pods := 0
	for _, a := range agents {
		if a.os != cluster.Windows {
			continue
		}
		pods++
		if v, ok := flagValue(a.spec.Args, "dns-server"); ok {
			t.Fatalf("%s was given --dns-server=%s: the test must leave finding it to the agent", a.pod, v)
		}
		var count, p50 float64
		eventually(t, 60*time.Second, "resolve_direct samples of "+a.pod.String(), func() error {
			ss, err := podMetrics(ctx, a.pod, 9445)
			if err != nil {
				return err
			}
			count, _ = sumMetric(ss, "xosprobe_probe_duration_seconds_count", want)
			if count == 0 {
				return fmt.Errorf("xosprobe_probe_duration_seconds_count%v is 0", want)
			}
			p50 = bucketQuantile(ss, "xosprobe_probe_duration_seconds_bucket", want, 0.5)
			return nil
		})
		source := "unlogged"
		if b, err := os.ReadFile(a.proc.LogPath); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, `"msg":"cluster DNS server"`) {
					source = l
					break
				}
			}
		}
		if !strings.Contains(source, `"source":"adapter"`) {
			t.Errorf("%s: the DNS server did not come from the adapter (GetAdaptersAddresses): %s", a.pod, source)
		}
		r.Figure("%s: %.0f samples, p50 %.3fms, source adapter", a.pod.Node.Name, count, p50*1e3)
	}
	if pods == 0 {
		t.Fatal("no Windows agent pods")
	}
}

// bucketQuantile estimates quantile q of the classic histogram buckets of
// name matching want (summed over the other labels), interpolating linearly
// inside the bucket as Prometheus' histogram_quantile does.
func bucketQuantile(ss []sample, name string, want map[string]string, q float64) float64 {
	byLE := map[float64]float64{}
	for _, s := range ss {
		if s.Name != name || !hasLabels(s.Labels, want) {
			continue
		}
		le, err := strconv.ParseFloat(s.Labels["le"], 64)
		if err != nil {
			continue
		}
		byLE[le] += s.Value
	}
	les := make([]float64, 0, len(byLE))
	for le := range byLE {
		les = append(les, le)
	}
	sort.Float64s(les)
	if len(les) == 0 || byLE[les[len(les)-1]] == 0 {
		return math.NaN()
	}
	rank := q * byLE[les[len(les)-1]]
	lower, below := 0.0, 0.0
	for _, le := range les {
		n := byLE[le]
		if n >= rank {
			if math.IsInf(le, 1) {
				return lower
			}
			return lower + (le-lower)*(rank-below)/(n-below)
		}
		lower, below = le, n
	}
	return math.NaN()
}

func TestBucketQuantile(t *testing.T) {
	want := map[string]string{"phase": "resolve_direct"}
	bucket := func(le string, v float64) sample {
		return sample{Name: "h_bucket", Labels: map[string]string{"phase": "resolve_direct", "le": le}, Value: v}
	}
	other := sample{Name: "h_bucket", Labels: map[string]string{"phase": "resolve_system", "le": "0.001"}, Value: 100}
	for _, tc := range []struct {
		name string
		ss   []sample
		q    float64
		want float64
	}{
		{"inside the first bucket", []sample{bucket("0.001", 10), bucket("0.002", 10), bucket("+Inf", 10), other}, 0.5, 0.0005},
		{"interpolated in the second", []sample{bucket("0.001", 2), bucket("0.002", 6), bucket("+Inf", 8)}, 0.5, 0.0015},
		{"summed over pods", []sample{bucket("0.001", 1), bucket("0.001", 1), bucket("0.002", 3), bucket("0.002", 3), bucket("+Inf", 4), bucket("+Inf", 4)}, 0.5, 0.0015},
		{"in +Inf: the last finite bound", []sample{bucket("0.001", 1), bucket("+Inf", 4)}, 0.5, 0.001},
		{"no samples", []sample{bucket("0.001", 0), bucket("+Inf", 0)}, 0.5, math.NaN()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := bucketQuantile(tc.ss, "h_bucket", want, tc.q)
			if math.IsNaN(tc.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tc.want) > 1e-12) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/xosprobe/xosprobe/test/e2e/cluster"
)

// windowsKubelet plays the kubelet of a harness Windows node for the pods the
// scheduler binds to it, as a Windows kubelet would: it starts each pod's one
// container under Wine from the image's binary (sandboxed as
// cluster/winesandbox.go describes, the volumes in the pod's C: drive,
// downward-API environment), reports the pod Running with its IP, Ready once
// its readiness probe's HTTP GET answers 200, and on a graceful deletion stops
// it and confirms the deletion. A container that exits is reported, not
// restarted: the test fails with its log tail.
type windowsKubelet struct {
	c    *cluster.Cluster
	node *cluster.Node
	// images maps an image reference to the host .exe its layout carries
	// (C:\xosprobe\xosprobe.exe in Dockerfile.windows): no nanoserver image
	// can be unpacked here, so the reference names the binary to run.
	images map[string]string
	logf   func(format string, args ...any)

	mu   sync.Mutex
	pods map[types.UID]*windowsPod
	errs []error
}

type windowsPod struct {
	pod   *cluster.Pod
	proc  *cluster.Process
	ready bool
}

// startWindowsKubelet runs a windowsKubelet for node until ctx ends or the
// test cleans up (which also checks it saw no error).
func startWindowsKubelet(t *testing.T, ctx context.Context, c *cluster.Cluster, node *cluster.Node, images map[string]string) *windowsKubelet {
	t.Helper()
	if node.OS != cluster.Windows {
		t.Fatalf("windows kubelet on %s node %s", node.OS, node.Name)
	}
	k := &windowsKubelet{c: c, node: node, images: images, logf: t.Logf, pods: map[types.UID]*windowsPod{}}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			k.sync(ctx)
			select {
			case <-ctx.Done():
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if err := k.err(); err != nil {
			t.Errorf("windows kubelet of %s: %v", node.Name, err)
		}
	})
	return k
}

// err joins what went wrong so far: pods it could not start, containers that
// exited, status it could not report.
func (k *windowsKubelet) err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return errors.Join(k.errs...)
}

func (k *windowsKubelet) fail(err error) {
	k.mu.Lock()
	k.errs = append(k.errs, err)
	k.mu.Unlock()
}

// running returns the harness pod of a running Pod object, or nil.
func (k *windowsKubelet) running(uid types.UID) *windowsPod {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pods[uid]
}

// sync is one pass of the kubelet's loop over the pods bound to its node.
func (k *windowsKubelet) sync(ctx context.Context) {
	list, err := k.c.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + k.node.Name})
	if err != nil {
		return // the apiserver restarting or ctx ending: the next pass retries
	}
	seen := map[types.UID]bool{}
	for i := range list.Items {
		obj := &list.Items[i]
		seen[obj.UID] = true
		wp := k.running(obj.UID)
		switch {
		case obj.DeletionTimestamp != nil:
			k.stop(ctx, obj, wp)
		case wp == nil:
			if k.isHarnessPod(obj) {
				continue // created and run by the harness itself (CreatePod)
			}
			if err := k.start(ctx, obj); err != nil {
				k.fail(fmt.Errorf("pod %s/%s: %w", obj.Namespace, obj.Name, err))
				_ = k.c.Client.CoreV1().Pods(obj.Namespace).Delete(ctx, obj.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
			}
		default:
			if exited, err := wp.proc.Exited(); exited {
				k.fail(fmt.Errorf("pod %s: container %s exited (%v); log tail:\n%s", wp.pod, wp.proc.Name, err, wp.proc.LogTail(2000)))
				k.forget(obj.UID)
				continue
			}
			if !wp.ready && k.probeReady(ctx, obj, wp.pod) {
				if err := k.c.SetReady(ctx, wp.pod, true); err == nil {
					k.mu.Lock()
					wp.ready = true
					k.mu.Unlock()
				}
			}
		}
	}
	// Pods deleted at once (grace 0) never show a deletionTimestamp here.
	k.mu.Lock()
	var gone []*windowsPod
	for uid, wp := range k.pods {
		if !seen[uid] {
			gone = append(gone, wp)
			delete(k.pods, uid)
		}
	}
	k.mu.Unlock()
	for _, wp := range gone {
		if err := k.c.DeletePod(ctx, wp.pod); err != nil {
			k.fail(fmt.Errorf("pod %s: cleaning up after its deletion: %w", wp.pod, err))
		}
	}
}

// isHarnessPod: pods the harness created with CreatePod carry its
// placeholder image and are already running.
func (k *windowsKubelet) isHarnessPod(obj *corev1.Pod) bool {
	return k.c.Pod(obj.Namespace, obj.Name) != nil
}

func (k *windowsKubelet) forget(uid types.UID) {
	k.mu.Lock()
	delete(k.pods, uid)
	k.mu.Unlock()
}

// start adopts a bound pod: network, status, volumes, environment, then its
// container under Wine.
func (k *windowsKubelet) start(ctx context.Context, obj *corev1.Pod) error {
	if len(obj.Spec.Containers) != 1 || len(obj.Spec.InitContainers) > 0 {
		return fmt.Errorf("%d containers and %d init containers: the test's Windows kubelet runs pods of one container", len(obj.Spec.Containers), len(obj.Spec.InitContainers))
	}
	ctr := obj.Spec.Containers[0]
	bin, ok := k.images[ctr.Image]
	if !ok {
		return fmt.Errorf("image %s: not one this node has (ErrImageNeverPull); known: %v", ctr.Image, keys(k.images))
	}
	if obj.Spec.OS == nil || obj.Spec.OS.Name != corev1.Windows {
		return fmt.Errorf("spec.os %v: a Windows node runs only pods that declare os windows", obj.Spec.OS)
	}
	p, err := k.c.AdoptPod(ctx, k.node, obj)
	if err != nil {
		return err
	}
	volumes, err := wineVolumes(ctx, k.c, p, &obj.Spec)
	if err != nil {
		return err
	}
	env, err := downwardEnv(&ctr, p)
	if err != nil {
		return err
	}
	// The image's entrypoint is the binary; command replaces it, args follow.
	argv := append([]string{bin}, ctr.Args...)
	if len(ctr.Command) > 0 {
		return fmt.Errorf("command %v: the test's Windows kubelet runs the image's entrypoint", ctr.Command)
	}
	proc, err := k.c.Exec(ctx, p, cluster.ExecSpec{Args: argv, Env: env, Wine: true, Name: ctr.Name})
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.pods[obj.UID] = &windowsPod{pod: p, proc: proc}
	k.mu.Unlock()
	k.logf("windows kubelet %s: started %s (%s), volumes %s: %s", k.node.Name, p, p.IP, strings.Join(volumes, ", "), strings.Join(ctr.Args, " "))
	return nil
}

// stop ends a gracefully deleted pod's container and confirms the deletion
// (grace 0), as the kubelet does once its containers are gone.
func (k *windowsKubelet) stop(ctx context.Context, obj *corev1.Pod, wp *windowsPod) {
	if wp != nil {
		k.forget(obj.UID)
		if err := k.c.DeletePod(ctx, wp.pod); err != nil {
			k.fail(fmt.Errorf("pod %s: stopping it: %w", wp.pod, err))
		}
		return
	}
	err := k.c.Client.CoreV1().Pods(obj.Namespace).Delete(ctx, obj.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	if err != nil && !apierrors.IsNotFound(err) {
		k.fail(fmt.Errorf("pod %s/%s: confirming its deletion: %w", obj.Namespace, obj.Name, err))
	}
}

// probeReady runs the container's readiness probe (httpGet only; no probe
// means ready) from the node, as the kubelet does.
func (k *windowsKubelet) probeReady(ctx context.Context, obj *corev1.Pod, p *cluster.Pod) bool {
	ctr := obj.Spec.Containers[0]
	rp := ctr.ReadinessProbe
	if rp == nil {
		return true
	}
	if rp.HTTPGet == nil {
		k.fail(fmt.Errorf("pod %s: readiness probe: only httpGet is run by the test's Windows kubelet", p))
		return false
	}
	port := rp.HTTPGet.Port.IntValue()
	if name := rp.HTTPGet.Port.StrVal; name != "" {
		for _, cp := range ctr.Ports {
			if cp.Name == name {
				port = int(cp.ContainerPort)
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	url := "http://" + p.IP.String() + ":" + strconv.Itoa(port) + rp.HTTPGet.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

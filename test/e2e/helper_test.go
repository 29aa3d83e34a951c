package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The test binary doubles as a tiny client and responder that runs inside
// pods (ip netns exec <pod> <test binary>), so the smoke test needs no curl,
// dig or python on the machine. TestMain dispatches on helperEnv.
const helperEnv = "XNE2E_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helper(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// helper runs one of:
//
//	serve NODE          HTTP /healthz on :9440, TCP accept on :9441-9443 (xosprobe serve's ports)
//	get URL             GET URL, print the body; exit 1 on error or non-200
//	dial HOST:PORT      TCP connect within 2 s; exit 1 on failure
//	resolve NAME        Go's resolver over /etc/resolv.conf; print the addresses
//	list-pods KC NS     list pods in NS with kubeconfig KC; exit 3 on Forbidden
func helper(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "helper: want MODE ARG")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch args[0] {
	case "serve":
		return helperServe(args[1])
	case "get":
		c := &http.Client{Timeout: 3 * time.Second}
		resp, err := c.Get(args[1])
		if err != nil {
			fmt.Println(err)
			return 1
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Print(string(b))
		if resp.StatusCode != http.StatusOK {
			return 1
		}
		return 0
	case "dial":
		conn, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", args[1])
		if err != nil {
			fmt.Println(err)
			return 1
		}
		conn.Close()
		fmt.Println("connected")
		return 0
	case "list-pods":
		// list-pods KUBECONFIG NAMESPACE: exit 3 when the API says Forbidden,
		// which still proves the token authenticated.
		if len(args) < 3 {
			return 2
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", args[1])
		if err != nil {
			fmt.Println(err)
			return 1
		}
		cfg.Timeout = 5 * time.Second
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		pods, err := cs.CoreV1().Pods(args[2]).List(ctx, metav1.ListOptions{})
		if apierrors.IsForbidden(err) {
			fmt.Println(err)
			return 3
		}
		if err != nil {
			fmt.Println(err)
			return 1
		}
		fmt.Println(len(pods.Items), "pods")
		return 0
	case "resolve":
		addrs, err := (&net.Resolver{PreferGo: true}).LookupHost(ctx, args[1])
		if err != nil {
			fmt.Println(err)
			return 1
		}
		fmt.Println(strings.Join(addrs, " "))
		return 0
	}
	fmt.Fprintln(os.Stderr, "helper: unknown mode", args[0])
	return 2
}

func helperServe(node string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "ok %s\n", node)
	})
	errc := make(chan error, 4)
	go func() { errc <- http.ListenAndServe(":9440", mux) }()
	for _, port := range []string{":9441", ":9442", ":9443"} {
		l, err := net.Listen("tcp", port)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					errc <- err
					return
				}
				c.Close()
			}
		}()
	}
	select {
	case <-ctx.Done():
		return 0
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return 0
		}
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
}

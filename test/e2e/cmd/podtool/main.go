// Command podtool is the one static binary in the images the e2e imports into
// its kubelet nodes' container runtime, where no registry is reachable: run as
// "pause" it is the pod sandbox's process, otherwise a tiny toolbox for the
// workload container and for exec through the apiserver.
//
//	pause          sleep until SIGTERM or SIGINT (the sandbox image's entrypoint)
//	serve ADDR     HTTP on ADDR: /healthz answers "ok <hostname>"
//	addrs          print the IPv4 addresses of the non-loopback interfaces
//	id             print "uid=N gid=N"
//	hostname       print the hostname
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

func run(argv []string, stdout, stderr io.Writer) int {
	args := argv[1:]
	if filepath.Base(argv[0]) == "pause" {
		args = []string{"pause"}
	}
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: podtool pause|serve ADDR|addrs|id|hostname")
		return 2
	}
	switch args[0] {
	case "pause":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		<-ctx.Done()
		return 0
	case "serve":
		if len(args) != 2 {
			fmt.Fprintln(stderr, "usage: podtool serve ADDR")
			return 2
		}
		return serve(args[1], stderr)
	case "addrs":
		addrs, err := ipv4Addrs()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintln(stdout, strings.Join(addrs, " "))
		return 0
	case "id":
		fmt.Fprintf(stdout, "uid=%d gid=%d\n", os.Getuid(), os.Getgid())
		return 0
	case "hostname":
		h, err := os.Hostname()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintln(stdout, h)
		return 0
	}
	fmt.Fprintf(stderr, "podtool: unknown command %q\n", args[0])
	return 2
}

func serve(addr string, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "ok %s\n", host)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		fmt.Fprintln(stderr, err)
		return 1
	case <-ctx.Done():
		shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
}

func ipv4Addrs() ([]string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				out = append(out, ifc.Name+"="+ipn.IP.String())
			}
		}
	}
	return out, nil
}

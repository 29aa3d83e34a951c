package cluster

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// These tests need neither root nor the cluster binaries.

func TestAddrAdd(t *testing.T) {
	for _, tc := range []struct {
		a    string
		d    int
		want string
	}{
		{"10.244.0.0", 1 << 8, "10.244.1.0"},
		{"10.240.0.0", 11, "10.240.0.11"},
		{"10.244.1.255", 1, "10.244.2.0"},
	} {
		if got := addrAdd(netip.MustParseAddr(tc.a), tc.d); got.String() != tc.want {
			t.Errorf("addrAdd(%s, %d) = %s, want %s", tc.a, tc.d, got, tc.want)
		}
	}
}

func TestAllocIP(t *testing.T) {
	n := &Node{Name: "n", PodCIDR: netip.MustParsePrefix("10.244.3.0/30")}
	n.Gateway = n.PodCIDR.Addr().Next()
	n.nextHost = n.Gateway.Next()
	ip, veth, err := n.allocIP()
	if err != nil || ip.String() != "10.244.3.2" || veth != "vp1" {
		t.Fatalf("first: %s %s %v", ip, veth, err)
	}
	if ip, _, err := n.allocIP(); err == nil {
		t.Fatalf("a /30 has one pod address after the gateway, got a second: %s", ip)
	}
}

func TestResolvConf(t *testing.T) {
	lin := ResolvConf(Linux, "ns1")
	if !strings.Contains(lin, "search ns1.svc.cluster.local svc.cluster.local cluster.local") || !strings.Contains(lin, "ndots:5") {
		t.Errorf("linux resolv.conf:\n%s", lin)
	}
	win := ResolvConf(Windows, "ns1")
	if !strings.Contains(win, "search ns1.svc.cluster.local\n") {
		t.Errorf("windows resolv.conf should carry the one suffix:\n%s", win)
	}
	for _, rc := range []string{lin, win} {
		if !strings.Contains(rc, "nameserver 10.96.0.10\n") {
			t.Errorf("nameserver missing:\n%s", rc)
		}
	}
}

func TestGeneratePKI(t *testing.T) {
	p, err := generatePKI(t.TempDir(), []net.IP{net.IPv4(127, 0, 0, 1), HostIP.AsSlice()})
	if err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, p.CACert)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	server := readCert(t, p.ServerCert)
	for _, host := range []string{"127.0.0.1", "10.240.0.1", "kubernetes.default.svc.cluster.local"} {
		if _, err := server.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("serving cert for %s: %v", host, err)
		}
	}
	admin := readCert(t, p.AdminCert)
	if _, err := admin.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin cert: %v", err)
	}
	if len(admin.Subject.Organization) != 1 || admin.Subject.Organization[0] != "system:masters" {
		t.Errorf("admin cert groups %v", admin.Subject.Organization)
	}
	if fi, err := os.Stat(p.SAKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("service-account key: %v %v", fi, err)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestProcessStopAndPidfile(t *testing.T) {
	dir := t.TempDir()
	p, err := startProcess("sleeper", dir+"/sleeper.log", dir+"/pids", os.Environ(), []string{"sh", "-c", "sleep 60 & sleep 60"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + "/pids/sleeper.pid"); err != nil {
		t.Fatalf("pidfile: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if done, _ := p.Exited(); !done {
		t.Fatal("still running after Stop")
	}
	if _, err := os.Stat(dir + "/pids/sleeper.pid"); !os.IsNotExist(err) {
		t.Errorf("pidfile left after Stop: %v", err)
	}
}

func TestKillPidfiles(t *testing.T) {
	dir := t.TempDir()
	p, err := startProcess("orphan", dir+"/o.log", dir+"/pids", os.Environ(), []string{"sleep", "60"})
	if err != nil {
		t.Fatal(err)
	}
	killed := killPidfiles(dir + "/pids")
	if len(killed) != 1 {
		t.Fatalf("killed %v", killed)
	}
	<-p.Done()
	// A pidfile whose PID now names another process (start time differs)
	// must not kill it.
	if err := os.WriteFile(dir+"/pids/stale.pid", []byte("1 12345\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if killed := killPidfiles(dir + "/pids"); len(killed) != 0 {
		t.Fatalf("killed a reused PID: %v", killed)
	}
}

package cluster

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// openFileProgram is a Windows program that prints its working directory,
// then tries to open each argument and says whether it could.
const openFileProgram = `package main

import (
	"fmt"
	"os"
)

func main() {
	wd, err := os.Getwd()
	fmt.Printf("cwd %s %v\n", wd, err)
	for _, p := range os.Args[1:] {
		f, err := os.Open(p)
		if err != nil {
			fmt.Printf("closed %s: %v\n", p, err)
			continue
		}
		f.Close()
		fmt.Printf("opened %s\n", p)
	}
}
`

// The sandbox a Windows pod's Wine runs in, end to end without a cluster: a
// network namespace, the pod's overlay prefix, a C: path written as a
// kubelet volume, and a Windows program started by its image path that
// tries host paths through every route Wine offers. Root and Wine needed.
func TestWineSandboxHidesTheHost(t *testing.T) {
	if os.Geteuid() != 0 || testing.Short() {
		t.Skip("needs root (netns, mounts)")
	}
	tmpl := os.Getenv("WINEPREFIX")
	if tmpl == "" {
		home, _ := os.UserHomeDir()
		tmpl = filepath.Join(home, ".wine")
	}
	if _, err := exec.LookPath("wine"); err != nil {
		t.Skip("wine not installed")
	}
	if _, err := os.Stat(filepath.Join(tmpl, "drive_c", "windows", "system32", "bcryptprimitives.dll")); err != nil {
		t.Skipf("wine prefix %s not prepared (test/wine/setup.sh)", tmpl)
	}
	if _, err := os.Stat("/etc/hostname"); err != nil {
		t.Skip("the host has no /etc/hostname to hide")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	work := t.TempDir()
	exe := filepath.Join(work, "openfile.exe")
	src := filepath.Join(work, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(openFileProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", exe, "main.go")
	build.Dir = src
	build.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the Windows program: %v\n%s", err, out)
	}

	prefix := "xnh5sb"
	c := &Cluster{cfg: Config{WineTemplate: tmpl, WorkDir: work, Prefix: prefix}}
	node := &Node{Name: "win-t", OS: Windows, IP: netip.MustParseAddr("10.240.0.99")}
	p := &Pod{Namespace: "t", Name: "sandbox", Node: node, IP: netip.MustParseAddr("10.244.9.2"), NetNS: prefix + "-pod", c: c}
	if out, err := exec.Command("ip", "netns", "add", p.NetNS).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		killPIDs(netnsPIDs(p.NetNS))
		if p.winePrefix != "" {
			_ = exec.Command("umount", p.winePrefix).Run()
		}
		_ = exec.Command("ip", "netns", "del", p.NetNS).Run()
	})

	if err := c.WriteWineFile(p, `C:\var\run\secrets\xosprobe\token`, []byte("t0ken")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(tmpl, "dosdevices", "z:")); err != nil {
		t.Errorf("the template lost its z: (make test-windows needs it): %v", err)
	}
	paths := []string{
		`C:\var\run\secrets\xosprobe\token`, // the control: written as a kubelet volume
		`Z:\etc\hostname`,
		`\\?\unix\etc\hostname`,
		`/etc/hostname`,
		`\\?\unix\proc\1\root\etc\hostname`,
		`\\?\unix` + strings.ReplaceAll(work, "/", `\`) + `\openfile.exe`,
	}
	out, err := c.Run(ctx, p, ExecSpec{Wine: true, Args: append([]string{exe}, paths...)})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("output:\n%s", out)
	if !strings.Contains(out, `cwd C:\ <nil>`) {
		t.Errorf("working directory is not C:\\")
	}
	if !strings.Contains(out, `opened `+paths[0]) {
		t.Errorf("the control %s did not open", paths[0])
	}
	for _, path := range paths[1:] {
		if !strings.Contains(out, "closed "+path+":") {
			t.Errorf("%s was not refused", path)
		}
	}
	if _, err := os.Stat(p.hostPath(p.winePrefix, `C:\openfile\openfile.exe`)); err != nil {
		t.Errorf("the program is not at the image path: %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(p.winePrefix, "dosdevices"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "c:" {
			t.Errorf("the pod's prefix has drive %s", e.Name())
		}
	}

	// Started by its image path once installed.
	out, err = c.Run(ctx, p, ExecSpec{Wine: true, Args: []string{`C:\openfile\openfile.exe`, `C:\openfile\openfile.exe`}})
	if err != nil || !strings.Contains(out, `opened C:\openfile\openfile.exe`) {
		t.Errorf("started by its C: path: %v\n%s", err, out)
	}
	if _, _, err := p.wineCommand(p.winePrefix, []string{`C:\nothere\x.exe`}); err == nil {
		t.Error("a C: path not in the pod's drive was accepted")
	}
}

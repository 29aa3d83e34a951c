// Command xosprobe-image assembles xosprobe's container images as OCI image
// layout tarballs without a Docker engine or registry access: the Linux image
// onto an empty base, the Windows image as one index with an image per
// Windows build onto nanoserver layouts pulled beforehand. The same inputs and
// SOURCE_DATE_EPOCH give the same bytes. Every image it writes is inspected
// before it is kept: the command resolves through PATH, the user is not an
// administrator, the labels are set, every Windows build has its os.version.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage:
  xosprobe-image linux   --binary bin/xosprobe     --out bin/xosprobe-linux.oci.tar   [flags]
  xosprobe-image windows --binary bin/xosprobe.exe --out bin/xosprobe-windows.oci.tar --base ltsc2022=DIR|TAR ... [flags]
  xosprobe-image inspect [--os linux|windows] [--builds ltsc2019,ltsc2022,ltsc2025] FILE.oci.tar
`

// buildConfig is the command line of linux and windows.
type buildConfig struct {
	binary, out string
	meta        imageMeta
	bases       map[string]string // Windows build -> layout directory or tarball
	builds      []string          // Windows builds the index must serve
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "linux", "windows":
		var cfg buildConfig
		cfg, err = parseBuild(args[0], args[1:], getenv, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if err == nil {
			err = build(args[0], cfg, stdout)
		}
	case "inspect":
		err = inspect(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
	if err != nil {
		fmt.Fprintf(stderr, "xosprobe-image %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// baseFlag collects repeated --base BUILD=PATH.
type baseFlag map[string]string

func (b baseFlag) String() string { return fmt.Sprint(map[string]string(b)) }

func (b baseFlag) Set(v string) error {
	build, p, ok := strings.Cut(v, "=")
	if !ok || build == "" || p == "" {
		return fmt.Errorf("%q is not BUILD=PATH", v)
	}
	if _, known := windowsBuilds[build]; !known {
		return fmt.Errorf("%q: unknown Windows build %q (supported: %s)", v, build, strings.Join(supportedWindowsBuilds(), ", "))
	}
	if _, dup := b[build]; dup {
		return fmt.Errorf("--base %s given twice", build)
	}
	b[build] = p
	return nil
}

func parseBuild(target string, args []string, getenv func(string) string, stderr io.Writer) (buildConfig, error) {
	fs := flag.NewFlagSet(target, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := buildConfig{bases: map[string]string{}}
	defaultName := "ghcr.io/xosprobe/xosprobe:dev-" + target
	fs.StringVar(&cfg.binary, "binary", "", "the xosprobe binary for the image's OS (required)")
	fs.StringVar(&cfg.out, "out", "", "output OCI layout tarball (required)")
	fs.StringVar(&cfg.meta.name, "name", defaultName, "reference the image is imported as (containerd) and tagged with (ref.name)")
	fs.StringVar(&cfg.meta.version, "version", "dev", "org.opencontainers.image.version")
	fs.StringVar(&cfg.meta.revision, "revision", "", "org.opencontainers.image.revision: the full commit (required)")
	fs.StringVar(&cfg.meta.source, "source", "https://github.com/xosprobe/xosprobe", "org.opencontainers.image.source")
	epoch := fs.String("source-date-epoch", getenv("SOURCE_DATE_EPOCH"), "Unix time stamped on every file and in the config, e.g. the commit time (default $SOURCE_DATE_EPOCH; required)")
	builds := fs.String("builds", strings.Join(supportedWindowsBuilds(), ","), "windows: the builds the index must serve, separated by commas or spaces")
	if target == "windows" {
		fs.Var(baseFlag(cfg.bases), "base", "windows: BUILD=PATH, a nanoserver OCI layout (directory or tarball) for BUILD; repeat per build")
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var missing []string
	for name, v := range map[string]string{"--binary": cfg.binary, "--out": cfg.out, "--revision": cfg.meta.revision, "--source-date-epoch (or SOURCE_DATE_EPOCH)": *epoch} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return cfg, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	secs, err := strconv.ParseInt(*epoch, 10, 64)
	if err != nil || secs < 0 {
		return cfg, fmt.Errorf("source date epoch %q is not a non-negative Unix time", *epoch)
	}
	cfg.meta.created = time.Unix(secs, 0).UTC()
	if target == "windows" {
		cfg.builds, err = parseBuilds(*builds)
		if err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

func parseBuilds(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, b := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		if _, ok := windowsBuilds[b]; !ok {
			return nil, fmt.Errorf("--builds: unknown Windows build %q (supported: %s)", b, strings.Join(supportedWindowsBuilds(), ", "))
		}
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--builds names no Windows build")
	}
	slices.Sort(out)
	return out, nil
}

func build(target string, cfg buildConfig, stdout io.Writer) error {
	binary, err := os.ReadFile(cfg.binary)
	if err != nil {
		return fmt.Errorf("binary: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	var l *layout
	var want expectation
	if target == "linux" {
		l, err = buildLinux(binary, cfg.meta)
		want = linuxExpectation()
	} else {
		var cleanup func()
		l, cleanup, err = buildWindowsFrom(binary, cfg)
		defer cleanup()
		want = windowsExpectation(cfg.builds)
	}
	if err != nil {
		return err
	}
	tmp, err := writeTemp(cfg.out, func(w io.Writer) error { return l.writeTar(w, cfg.meta.created) })
	if err != nil {
		return fmt.Errorf("writing %s: %w", cfg.out, err)
	}
	defer os.Remove(tmp)
	images, err := verifyArchive(tmp, want)
	if err != nil {
		return fmt.Errorf("the image just built fails its checks, not writing %s: %w", cfg.out, err)
	}
	if err := os.Rename(tmp, cfg.out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s\n", cfg.out, cfg.meta.name)
	printSummary(stdout, images)
	return nil
}

// buildWindowsFrom loads every base the builds need; all missing or bad bases
// are reported at once, with what to do about them. The layout reads the
// bases' blobs when it is written: cleanup removes extracted tarballs after.
func buildWindowsFrom(binary []byte, cfg buildConfig) (*layout, func(), error) {
	tmpRoot, err := os.MkdirTemp(filepath.Dir(cfg.out), ".bases-")
	if err != nil {
		return nil, func() {}, err
	}
	cleanup := func() { os.RemoveAll(tmpRoot) }
	var bases []baseImage
	var errs []error
	for _, b := range cfg.builds {
		src, ok := cfg.bases[b]
		if !ok {
			errs = append(errs, fmt.Errorf("base %s: no --base %s=PATH given", b, b))
			continue
		}
		base, _, err := loadBase(b, src, tmpRoot) // extracted under tmpRoot, removed by cleanup
		if err != nil {
			errs = append(errs, err)
			continue
		}
		bases = append(bases, base)
	}
	for b := range cfg.bases {
		if !slices.Contains(cfg.builds, b) {
			errs = append(errs, fmt.Errorf("--base %s given, but %s is not in --builds %s", b, b, strings.Join(cfg.builds, ",")))
		}
	}
	if len(errs) > 0 {
		errs = append(errs, fmt.Errorf("no Windows image built: pull each missing base on a machine with registry access, e.g.\n"+
			"  crane pull --format=oci --platform=windows/amd64 mcr.microsoft.com/windows/nanoserver:BUILD DIR/nanoserver-BUILD\n"+
			"(make image-windows reads DIR from NANOSERVER_DIR, default ~/.cache/xosprobe/nanoserver)\n"+
			"or limit the index with --builds (make image-windows WINDOWS_BUILDS=...)"))
		return nil, cleanup, errors.Join(errs...)
	}
	l, err := buildWindows(binary, cfg.meta, bases)
	return l, cleanup, err
}

func inspect(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	goos := fs.String("os", "linux", "the images' OS: linux or windows")
	builds := fs.String("builds", strings.Join(supportedWindowsBuilds(), ","), "windows: the builds the index must serve")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one FILE.oci.tar\n%s", usage)
	}
	var want expectation
	switch *goos {
	case "linux":
		want = linuxExpectation()
	case "windows":
		bs, err := parseBuilds(*builds)
		if err != nil {
			return err
		}
		want = windowsExpectation(bs)
	default:
		return fmt.Errorf("--os %q: want linux or windows", *goos)
	}
	images, err := verifyArchive(fs.Arg(0), want)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if encErr := enc.Encode(images); encErr != nil {
			return encErr
		}
	} else {
		printSummary(stdout, images)
	}
	return err
}

func printSummary(w io.Writer, images []imageSummary) {
	for _, s := range images {
		c := s.Config.Config
		fmt.Fprintf(w, "  %s %s\n", platformString(s.Platform), s.Digest)
		fmt.Fprintf(w, "    Entrypoint %q  User %q  WorkingDir %q\n", c.Entrypoint, c.User, c.WorkingDir)
		fmt.Fprintf(w, "    PATH %q -> %q\n", pathEnv(c.Env, s.Config.OS), s.Resolved)
		fmt.Fprintf(w, "    labels %s\n", strings.Join(sortedLabels(c.Labels), " "))
	}
}

package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
)

// requiredLabels are the labels every image must carry.
var requiredLabels = []string{
	"org.opencontainers.image.source",
	"org.opencontainers.image.version",
	"org.opencontainers.image.revision",
	"org.opencontainers.image.title",
}

// imageConfig is the part of an image config the checks read.
type imageConfig struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	OSVersion    string `json:"os.version"`
	Config       struct {
		User       string            `json:"User"`
		Env        []string          `json:"Env"`
		Entrypoint []string          `json:"Entrypoint"`
		Cmd        []string          `json:"Cmd"`
		WorkingDir string            `json:"WorkingDir"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// imageSummary is one platform image of an archive, as inspected.
type imageSummary struct {
	Digest   string      `json:"digest"`
	Platform platform    `json:"platform"`
	Config   imageConfig `json:"config"`
	// Resolved is where the command name resolves through PATH ("" if it does not).
	Resolved string `json:"resolved"`
}

// archive reads blobs of an OCI layout tarball by digest. Every read rescans
// the tar; tar.Reader seeks over the bodies it skips.
type archive struct{ path string }

// open returns a reader of the entry name and a function that closes it.
func (a archive) open(name string) (io.Reader, func(), error) {
	f, err := os.Open(a.path)
	if err != nil {
		return nil, nil, err
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			f.Close()
			return nil, nil, fmt.Errorf("%s: no %s", a.path, name)
		}
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("%s: %w", a.path, err)
		}
		if path.Clean(h.Name) == name {
			return tr, func() { f.Close() }, nil
		}
	}
}

// readJSON decodes the entry name, reading at most 4 MiB: indexes, manifests
// and configs are a few KiB.
func (a archive) readJSON(name string, v any) error {
	r, done, err := a.open(name)
	if err != nil {
		return err
	}
	defer done()
	b, err := io.ReadAll(io.LimitReader(r, 4<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func blobName(digest string) string {
	return "blobs/" + strings.Replace(digest, ":", "/", 1)
}

// expectation says what an archive must hold.
type expectation struct {
	os      string   // linux or windows
	builds  []string // Windows builds (windowsBuilds keys) the index must serve
	command string   // the name `kubectl exec ... -- NAME check` runs
}

func linuxExpectation() expectation { return expectation{os: "linux", command: "xosprobe"} }

func windowsExpectation(builds []string) expectation {
	return expectation{os: "windows", builds: builds, command: "xosprobe.exe"}
}

// verifyArchive inspects every image of the archive and checks it against
// want: the command resolves through PATH to an executable the layers hold,
// the user is not an administrator, labels are set, and on Windows every build
// has an image whose os.version is that build.
func verifyArchive(file string, want expectation) ([]imageSummary, error) {
	a := archive{path: file}
	var top index
	if err := a.readJSON("index.json", &top); err != nil {
		return nil, err
	}
	_, done, err := a.open("oci-layout")
	if err != nil {
		return nil, err
	}
	done()
	var manifests []descriptor
	for _, d := range top.Manifests {
		switch d.MediaType {
		case mediaTypeManifest:
			manifests = append(manifests, d)
		case mediaTypeIndex:
			var child index
			if err := a.readJSON(blobName(d.Digest), &child); err != nil {
				return nil, err
			}
			manifests = append(manifests, child.Manifests...)
		default:
			return nil, fmt.Errorf("index.json: descriptor %s has media type %q", d.Digest, d.MediaType)
		}
	}
	if len(manifests) == 0 {
		return nil, fmt.Errorf("%s: no image in index.json", file)
	}
	var out []imageSummary
	var errs []error
	for _, d := range manifests {
		s, err := verifyImage(a, d, want)
		out = append(out, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("image %s (%s): %w", d.Digest, platformString(s.Platform), err))
		}
	}
	if want.os == "windows" {
		errs = append(errs, checkBuilds(out, want.builds)...)
	}
	return out, errors.Join(errs...)
}

func platformString(p platform) string {
	s := p.OS + "/" + p.Architecture
	if p.OSVersion != "" {
		s += " " + p.OSVersion
	}
	return s
}

// checkBuilds requires one image per wanted build and no build twice.
func checkBuilds(images []imageSummary, builds []string) []error {
	var errs []error
	count := map[string]int{}
	for _, s := range images {
		for b, prefix := range windowsBuilds {
			if strings.HasPrefix(s.Platform.OSVersion, prefix+".") {
				count[b]++
			}
		}
	}
	for _, b := range builds {
		switch count[b] {
		case 0:
			errs = append(errs, fmt.Errorf("no image for Windows %s: no index entry has os.version %s.*", b, windowsBuilds[b]))
		case 1:
		default:
			errs = append(errs, fmt.Errorf("build %s has %d images in the index: the runtime's choice would be arbitrary", b, count[b]))
		}
	}
	return errs
}

func verifyImage(a archive, d descriptor, want expectation) (imageSummary, error) {
	s := imageSummary{Digest: d.Digest}
	if d.Platform != nil {
		s.Platform = *d.Platform
	}
	var m manifest
	if err := a.readJSON(blobName(d.Digest), &m); err != nil {
		return s, err
	}
	if err := a.readJSON(blobName(m.Config.Digest), &s.Config); err != nil {
		return s, err
	}
	c := s.Config
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.OS != want.os || c.Architecture != "amd64" {
		fail("config is %s/%s, want %s/amd64", c.OS, c.Architecture, want.os)
	}
	if d.Platform == nil || d.Platform.OS != c.OS || d.Platform.Architecture != c.Architecture {
		fail("index platform %+v does not match the config's %s/%s", d.Platform, c.OS, c.Architecture)
	}
	if want.os == "windows" {
		if s.Platform.OSVersion == "" {
			fail("index entry has no os.version: the runtime cannot pick it for a build")
		} else if s.Platform.OSVersion != c.OSVersion {
			fail("index os.version %q differs from the config's %q", s.Platform.OSVersion, c.OSVersion)
		}
	}
	if len(m.Layers) != len(c.RootFS.DiffIDs) {
		fail("%d layers but %d diff_ids", len(m.Layers), len(c.RootFS.DiffIDs))
	}
	for _, k := range requiredLabels {
		if c.Config.Labels[k] == "" {
			fail("label %s is not set", k)
		}
	}
	if len(c.Config.Entrypoint) == 0 {
		fail("no Entrypoint")
	}
	if err := checkUser(a, m.Layers, c, want.os); err != nil {
		errs = append(errs, err)
	}
	resolved, err := resolveCommand(a, m.Layers, c, want)
	s.Resolved = resolved
	if err != nil {
		errs = append(errs, err)
	} else if len(c.Config.Entrypoint) > 0 && !samePath(c.Config.Entrypoint[0], resolved, want.os) {
		fail("Entrypoint %q is not the binary %q that %q resolves to on PATH", c.Config.Entrypoint[0], resolved, want.command)
	}
	return s, errors.Join(errs...)
}

// samePath compares paths in the container; Windows' compare without case.
func samePath(x, y, goos string) bool {
	if goos == "windows" {
		return strings.EqualFold(x, y)
	}
	return x == y
}

// pathEnv is the PATH value of env ("" if unset).
func pathEnv(env []string, goos string) string {
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "PATH" || (goos == "windows" && strings.EqualFold(k, "PATH")) {
			return v
		}
	}
	return ""
}

// resolveCommand finds want.command the way the runtime's exec does: the first
// PATH directory whose layers hold it (executable, on Linux).
func resolveCommand(a archive, layers []descriptor, c imageConfig, want expectation) (string, error) {
	p := pathEnv(c.Config.Env, want.os)
	if p == "" {
		return "", fmt.Errorf("no PATH in Env: %q does not resolve", want.command)
	}
	sep, join := ":", "/"
	if want.os == "windows" {
		sep, join = ";", `\`
	}
	var looked []string
	for _, dir := range strings.Split(p, sep) {
		if dir == "" {
			continue
		}
		full := strings.TrimSuffix(dir, join) + join + want.command
		name, err := layerPath(full, want.os)
		if err != nil {
			looked = append(looked, full)
			continue
		}
		h, err := findInLayers(a, layers, name)
		if err != nil {
			return "", err
		}
		if h == nil || h.Typeflag != tar.TypeReg {
			looked = append(looked, full)
			continue
		}
		if want.os == "linux" && h.Mode&0o111 == 0 {
			return "", fmt.Errorf("%s is on PATH but not executable (mode %o)", full, h.Mode)
		}
		return full, nil
	}
	return "", fmt.Errorf("%q is not on PATH %q: none of %s is in the image", want.command, p, strings.Join(looked, ", "))
}

// layerPath maps an absolute path in the container to its name in a layer tar:
// /usr/local/bin/x -> usr/local/bin/x, C:\xosprobe\x.exe -> Files/xosprobe/x.exe.
func layerPath(p, goos string) (string, error) {
	if goos == "windows" {
		if len(p) < 3 || !strings.EqualFold(p[:3], `C:\`) {
			return "", fmt.Errorf("%q is not a path on drive C", p)
		}
		return "Files/" + strings.ReplaceAll(p[3:], `\`, "/"), nil
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%q is not absolute", p)
	}
	return path.Clean(p)[1:], nil
}

// findInLayers returns the header of name in the topmost layer holding it, or
// nil if no layer does or a layer above removed it (whiteout). Windows paths
// compare without regard to case, as NTFS does.
func findInLayers(a archive, layers []descriptor, name string) (*tar.Header, error) {
	windows := strings.HasPrefix(name, "Files/")
	same := func(x, y string) bool {
		if windows {
			return strings.EqualFold(x, y)
		}
		return x == y
	}
	whiteout := path.Join(path.Dir(name), ".wh."+path.Base(name))
	for i := len(layers) - 1; i >= 0; i-- {
		var found *tar.Header
		removed := false
		err := eachLayerEntry(a, layers[i], func(h *tar.Header, _ io.Reader) (bool, error) {
			n := strings.TrimSuffix(path.Clean(h.Name), "/")
			switch {
			case same(n, name):
				found = h
				return true, nil
			case same(n, whiteout):
				removed = true
				return true, nil
			}
			return false, nil
		})
		if err != nil {
			return nil, err
		}
		if removed {
			return nil, nil
		}
		if found != nil {
			return found, nil
		}
	}
	return nil, nil
}

// eachLayerEntry calls fn for every entry of a gzip'd or plain layer until fn
// says stop.
func eachLayerEntry(a archive, d descriptor, fn func(*tar.Header, io.Reader) (stop bool, err error)) error {
	r, done, err := a.open(blobName(d.Digest))
	if err != nil {
		return fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	defer done()
	br := bufio.NewReader(r)
	var lr io.Reader = br
	if strings.HasSuffix(d.MediaType, "gzip") {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("layer %s: %w", d.Digest, err)
		}
		defer zr.Close()
		lr = zr
	}
	tr := tar.NewReader(lr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("layer %s: %w", d.Digest, err)
		}
		stop, err := fn(h, tr)
		if err != nil || stop {
			return err
		}
	}
}

// checkUser rejects an image that would run as an administrator. On Linux the
// user must be a numeric non-zero uid:gid (runAsNonRoot can only verify a
// numeric user) with a passwd entry, so tooling can name it.
func checkUser(a archive, layers []descriptor, c imageConfig, goos string) error {
	user := c.Config.User
	if goos == "windows" {
		switch {
		case user == "":
			return fmt.Errorf("no User: the container would run as the base's default account")
		case strings.EqualFold(user, "ContainerAdministrator"):
			return fmt.Errorf("config User is %s, an administrator", user)
		}
		return nil
	}
	uidText, gidText, _ := strings.Cut(user, ":")
	uid, err := strconv.Atoi(uidText)
	if err != nil {
		return fmt.Errorf("config User %q is not a numeric uid[:gid]: the kubelet's runAsNonRoot cannot verify a user name", user)
	}
	if uid == 0 {
		return fmt.Errorf("config User %q is root", user)
	}
	if gidText != "" {
		if _, err := strconv.Atoi(gidText); err != nil {
			return fmt.Errorf("config User %q: group %q is not numeric", user, gidText)
		}
	}
	passwd, err := readLayerFile(a, layers, "etc/passwd")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(passwd, "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 3 && f[2] == uidText {
			return nil
		}
	}
	return fmt.Errorf("config User %q has no /etc/passwd entry", user)
}

// readLayerFile returns the content of name from the topmost layer holding it.
func readLayerFile(a archive, layers []descriptor, name string) (string, error) {
	for i := len(layers) - 1; i >= 0; i-- {
		var content []byte
		found := false
		err := eachLayerEntry(a, layers[i], func(h *tar.Header, r io.Reader) (bool, error) {
			if path.Clean(h.Name) != name {
				return false, nil
			}
			found = true
			b, err := io.ReadAll(io.LimitReader(r, 1<<20))
			content = b
			return true, err
		})
		if err != nil {
			return "", err
		}
		if found {
			return string(content), nil
		}
	}
	return "", fmt.Errorf("no /%s in the image", name)
}

// sortedLabels renders labels as k=v, sorted, for the summary.
func sortedLabels(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

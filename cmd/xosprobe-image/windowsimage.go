package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The Windows image's fixed shape: the binary in its own directory, that
// directory first on PATH, run as the unprivileged account nanoserver provides.
const (
	windowsBinaryDir  = `C:\xosprobe`
	windowsBinaryPath = windowsBinaryDir + `\xosprobe.exe`
	windowsUser       = "ContainerUser"
	// nanoserver's own PATH, used only if a base declares none.
	windowsDefaultPath = `C:\Windows\system32;C:\Windows`

	// windowsRawSD is the security descriptor O:BUG:BU (owner and group
	// BUILTIN\Users) as go-containerregistry and ko write it: without one the
	// file lands without an ACL that lets ContainerUser execute it.
	windowsRawSD = "AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAAhAgAAAQIAAAAAAAUgAAAAIQIAAA=="
)

// windowsBuilds maps each supported nanoserver tag to its OS build: under
// process isolation a container runs only on a host of its build (a 2025 host
// also runs 2022 containers), so the index carries one image per build.
var windowsBuilds = map[string]string{
	"ltsc2019": "10.0.17763",
	"ltsc2022": "10.0.20348",
	"ltsc2025": "10.0.26100",
}

// supportedWindowsBuilds is windowsBuilds' keys, sorted.
func supportedWindowsBuilds() []string {
	out := make([]string, 0, len(windowsBuilds))
	for b := range windowsBuilds {
		out = append(out, b)
	}
	sort.Strings(out)
	return out
}

// baseImage is the windows/amd64 image found in a nanoserver layout.
type baseImage struct {
	build     string
	dir       string // layout directory (extracted, if the input was a tarball)
	manifest  manifest
	config    map[string]json.RawMessage
	osVersion string
}

// windowsLayer is the layer that adds the binary, in the layout Windows'
// layer importer (hcsshim) expects: the filesystem under Files/, registry
// hives under Hives/ (none here).
func windowsLayer(binary []byte) []entry {
	sd := map[string]string{"MSWINDOWS.rawsd": windowsRawSD}
	return []entry{
		{name: "Files", dir: true, mode: 0o555, paxRecords: sd},
		{name: "Files/xosprobe", dir: true, mode: 0o555, paxRecords: sd},
		{name: "Files/xosprobe/xosprobe.exe", mode: 0o555, data: binary, paxRecords: sd},
		{name: "Hives", dir: true, mode: 0o555, paxRecords: sd},
	}
}

// buildWindows assembles one windows/amd64 image per base and an index whose
// platforms carry each base's os.version, so the runtime on each node picks
// the image of its own build.
func buildWindows(binary []byte, meta imageMeta, bases []baseImage) (*layout, error) {
	if len(binary) == 0 {
		return nil, fmt.Errorf("the xosprobe.exe binary is empty")
	}
	if len(bases) == 0 {
		return nil, fmt.Errorf("no nanoserver base given")
	}
	layer, err := buildLayer(windowsLayer(binary), meta.created)
	if err != nil {
		return nil, err
	}
	l := newLayout()
	layerDesc := l.addBytes(mediaTypeLayerGzip, layer.gz)
	sorted := append([]baseImage(nil), bases...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].build < sorted[j].build })
	img := index{SchemaVersion: 2, MediaType: mediaTypeIndex}
	for _, b := range sorted {
		config, err := windowsConfig(b, layer.diffID, meta)
		if err != nil {
			return nil, err
		}
		configDesc, err := l.addJSON(mediaTypeConfig, config)
		if err != nil {
			return nil, err
		}
		layers := make([]descriptor, 0, len(b.manifest.Layers)+1)
		for _, d := range b.manifest.Layers {
			ociDesc, err := ociLayerDescriptor(d)
			if err != nil {
				return nil, fmt.Errorf("base %s: %w", b.build, err)
			}
			l.addFile(d, filepath.Join(b.dir, blobPath(d.Digest)))
			layers = append(layers, ociDesc)
		}
		layers = append(layers, layerDesc)
		md, err := l.addJSON(mediaTypeManifest, manifest{
			SchemaVersion: 2,
			MediaType:     mediaTypeManifest,
			Config:        configDesc,
			Layers:        layers,
			Annotations:   map[string]string{"org.opencontainers.image.base.name": "mcr.microsoft.com/windows/nanoserver:" + b.build},
		})
		if err != nil {
			return nil, err
		}
		md.Platform = &platform{Architecture: "amd64", OS: "windows", OSVersion: b.osVersion}
		img.Manifests = append(img.Manifests, md)
	}
	imgDesc, err := l.addJSON(mediaTypeIndex, img)
	if err != nil {
		return nil, err
	}
	imgDesc.Annotations = meta.refAnnotations()
	l.index.Manifests = []descriptor{imgDesc}
	return l, nil
}

// windowsConfig is the base's config with the binary's layer on top; every
// field the base sets and this image does not change is kept as it was.
func windowsConfig(b baseImage, diffID string, meta imageMeta) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(b.config)+2)
	for k, v := range b.config {
		out[k] = v
	}
	var run map[string]json.RawMessage
	if raw, ok := b.config["config"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &run); err != nil {
			return nil, fmt.Errorf("base %s: config.config: %w", b.build, err)
		}
	}
	if run == nil {
		run = map[string]json.RawMessage{}
	}
	var env []string
	if raw, ok := run["Env"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &env); err != nil {
			return nil, fmt.Errorf("base %s: config.Env: %w", b.build, err)
		}
	}
	labels := map[string]string{}
	if raw, ok := run["Labels"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &labels); err != nil {
			return nil, fmt.Errorf("base %s: config.Labels: %w", b.build, err)
		}
	}
	for k, v := range meta.labels() {
		labels[k] = v
	}
	created := meta.created.UTC().Format(time.RFC3339)
	set := func(m map[string]json.RawMessage, k string, v any) error {
		raw, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("base %s: %s: %w", b.build, k, err)
		}
		m[k] = raw
		return nil
	}
	// The base's Cmd (cmd.exe) would become the binary's arguments.
	delete(run, "Cmd")
	for k, v := range map[string]any{
		"Entrypoint": []string{windowsBinaryPath},
		"Env":        windowsEnv(env),
		"User":       windowsUser,
		"WorkingDir": windowsBinaryDir,
		"Labels":     labels,
	} {
		if err := set(run, k, v); err != nil {
			return nil, err
		}
	}
	var rootfs struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	}
	if err := json.Unmarshal(b.config["rootfs"], &rootfs); err != nil {
		return nil, fmt.Errorf("base %s: config.rootfs: %w", b.build, err)
	}
	rootfs.DiffIDs = append(rootfs.DiffIDs, diffID)
	var history []map[string]any
	if raw, ok := b.config["history"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &history); err != nil {
			return nil, fmt.Errorf("base %s: config.history: %w", b.build, err)
		}
	}
	history = append(history, map[string]any{"created": created, "created_by": "xosprobe-image windows: " + windowsBinaryPath})
	for k, v := range map[string]any{"config": run, "rootfs": rootfs, "history": history, "created": created} {
		if err := set(out, k, v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// windowsEnv puts the binary's directory first on PATH, keeping the base's
// entries (Windows matches variable names without regard to case).
func windowsEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	basePath := windowsDefaultPath
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if strings.EqualFold(k, "PATH") {
			basePath = v
			continue
		}
		out = append(out, kv)
	}
	p := windowsBinaryDir
	if basePath != "" {
		p += ";" + basePath
	}
	return append(out, "PATH="+p)
}

// ociLayerDescriptor maps a base layer's media type to its OCI name.
func ociLayerDescriptor(d descriptor) (descriptor, error) {
	out := d
	switch d.MediaType {
	case mediaTypeLayerGzip, mediaTypeLayerTar, mediaTypeForeignGzip, mediaTypeForeignTar:
	case dockerLayerGzip:
		out.MediaType = mediaTypeLayerGzip
	case dockerForeignGzip:
		out.MediaType = mediaTypeForeignGzip
	default:
		return descriptor{}, fmt.Errorf("layer %s: unsupported media type %q", d.Digest, d.MediaType)
	}
	return out, nil
}

// blobPath is a digest's file under a layout root.
func blobPath(digest string) string {
	algo, hex, _ := strings.Cut(digest, ":")
	return filepath.Join("blobs", algo, hex)
}

// loadBase reads the windows/amd64 image of a nanoserver layout (directory or
// tarball) and checks it is the build it is given for. cleanup removes what
// extracting a tarball left.
func loadBase(build, src, tmpRoot string) (b baseImage, cleanup func(), err error) {
	cleanup = func() {}
	want, ok := windowsBuilds[build]
	if !ok {
		return b, cleanup, fmt.Errorf("base %s: unknown Windows build (supported: %s)", build, strings.Join(supportedWindowsBuilds(), ", "))
	}
	st, err := os.Stat(src)
	if err != nil {
		return b, cleanup, fmt.Errorf("base %s: %w", build, err)
	}
	dir := src
	if !st.IsDir() {
		dir, err = os.MkdirTemp(tmpRoot, "nanoserver-"+build+"-")
		if err != nil {
			return b, cleanup, err
		}
		cleanup = func() { os.RemoveAll(dir) }
		if err := extractTar(src, dir); err != nil {
			return b, cleanup, fmt.Errorf("base %s: %s: %w", build, src, err)
		}
	}
	b, err = readBase(build, dir)
	if err != nil {
		return b, cleanup, fmt.Errorf("base %s: %s: %w", build, src, err)
	}
	if !strings.HasPrefix(b.osVersion, want+".") {
		return b, cleanup, fmt.Errorf("base %s: %s: os.version %q is not build %s (%s)", build, src, b.osVersion, want, build)
	}
	return b, cleanup, nil
}

// readBase finds the single windows/amd64 image of the layout in dir.
func readBase(build, dir string) (baseImage, error) {
	b := baseImage{build: build, dir: dir}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return b, fmt.Errorf("not an OCI image layout (no oci-layout file)")
	}
	var top index
	if err := readJSON(filepath.Join(dir, "index.json"), &top); err != nil {
		return b, err
	}
	found, err := findWindowsManifests(dir, top.Manifests, 0)
	if err != nil {
		return b, err
	}
	switch len(found) {
	case 0:
		return b, fmt.Errorf("no windows/amd64 image in the layout")
	case 1:
	default:
		var ds []string
		for _, d := range found {
			ds = append(ds, d.Digest)
		}
		return b, fmt.Errorf("%d windows/amd64 images in the layout (%s): keep one per build", len(found), strings.Join(ds, ", "))
	}
	if err := readJSON(filepath.Join(dir, blobPath(found[0].Digest)), &b.manifest); err != nil {
		return b, err
	}
	if err := readJSON(filepath.Join(dir, blobPath(b.manifest.Config.Digest)), &b.config); err != nil {
		return b, fmt.Errorf("config: %w", err)
	}
	var head struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		OSVersion    string `json:"os.version"`
	}
	raw, err := json.Marshal(b.config)
	if err != nil {
		return b, err
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return b, fmt.Errorf("config: %w", err)
	}
	if head.OS != "windows" || head.Architecture != "amd64" {
		return b, fmt.Errorf("config is %s/%s, not windows/amd64", head.OS, head.Architecture)
	}
	if head.OSVersion == "" {
		return b, fmt.Errorf("config has no os.version")
	}
	b.osVersion = head.OSVersion
	if _, ok := b.config["rootfs"]; !ok {
		return b, fmt.Errorf("config has no rootfs")
	}
	for _, d := range b.manifest.Layers {
		st, err := os.Stat(filepath.Join(dir, blobPath(d.Digest)))
		if err != nil {
			return b, fmt.Errorf("layer %s is not in the layout (a foreign layer the pull skipped?): %w", d.Digest, err)
		}
		if st.Size() != d.Size {
			return b, fmt.Errorf("layer %s: %d bytes in the layout, the manifest says %d", d.Digest, st.Size(), d.Size)
		}
	}
	return b, nil
}

// findWindowsManifests walks indexes down to the manifests for windows/amd64.
// A manifest without a platform is kept; its config decides later.
func findWindowsManifests(dir string, ds []descriptor, depth int) ([]descriptor, error) {
	if depth > 4 {
		return nil, fmt.Errorf("indexes nested too deep")
	}
	var out []descriptor
	for _, d := range ds {
		if d.Platform != nil && (d.Platform.OS != "windows" || d.Platform.Architecture != "amd64") {
			continue
		}
		switch d.MediaType {
		case mediaTypeManifest, dockerManifest:
			out = append(out, d)
		case mediaTypeIndex, dockerManifestList:
			var child index
			if err := readJSON(filepath.Join(dir, blobPath(d.Digest)), &child); err != nil {
				return nil, err
			}
			more, err := findWindowsManifests(dir, child.Manifests, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
		default:
			return nil, fmt.Errorf("descriptor %s: unsupported media type %q", d.Digest, d.MediaType)
		}
	}
	// One image may be listed twice (under two tags): count it once.
	seen := map[string]bool{}
	uniq := out[:0]
	for _, d := range out {
		if !seen[d.Digest] {
			seen[d.Digest] = true
			uniq = append(uniq, d)
		}
	}
	return uniq, nil
}

func readJSON(p string, v any) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(p), err)
	}
	return nil
}

// extractTar unpacks an oci-archive, refusing entries that leave dst.
func extractTar(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		if name == "." {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("entry %q leaves the layout", h.Name)
		}
		target := filepath.Join(dst, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.Create(target)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q: unsupported type %q", h.Name, h.Typeflag)
		}
	}
}

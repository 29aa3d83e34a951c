package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var testMeta = imageMeta{
	name:     "ghcr.io/xosprobe/xosprobe:dev-test",
	version:  "v1.2.3",
	revision: "0123456789abcdef0123456789abcdef01234567",
	source:   "https://github.com/xosprobe/xosprobe",
	created:  time.Unix(1765000000, 0).UTC(),
}

// fakeBinary stands in for xosprobe: the images never run it in these tests.
var fakeBinary = []byte("\x7fELF fake xosprobe binary for layout tests")

// writeArchive writes l to a file in t's temp dir and returns its path.
func writeArchive(t *testing.T, l *layout, mtime time.Time) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image.oci.tar")
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, l.writeTar(f, mtime))
	require.NoError(t, f.Close())
	return p
}

// tarEntries lists the headers of a tar file in order.
func tarEntries(t *testing.T, r io.Reader) []*tar.Header {
	t.Helper()
	tr := tar.NewReader(r)
	var out []*tar.Header
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		out = append(out, h)
	}
}

// fakeBase describes a synthetic nanoserver layout.
type fakeBase struct {
	osVersion string
	env       []string
	docker    bool // Docker schema 2 media types, as crane pull keeps them
	asTar     bool // an oci-archive instead of a directory
	wrapIndex bool // index.json points at a multi-platform index, as a tag does
}

// makeBase writes a small nanoserver-like OCI layout: one layer with
// Files/Windows/System32/cmd.exe and a config carrying os.version, PATH,
// ContainerUser and Cmd, as mcr.microsoft.com/windows/nanoserver's do.
func makeBase(t *testing.T, fb fakeBase) string {
	t.Helper()
	dir := t.TempDir()
	write := func(b []byte) descriptor {
		d := digestOf(b)
		p := filepath.Join(dir, blobPath(d))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, b, 0o644))
		return descriptor{Digest: d, Size: int64(len(b))}
	}
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range []struct {
		name string
		body string
	}{{"Files", ""}, {"Files/Windows", ""}, {"Files/Windows/System32", ""}, {"Files/Windows/System32/cmd.exe", "MZ cmd"}, {"Hives", ""}} {
		h := &tar.Header{Name: e.name, Typeflag: tar.TypeDir, Mode: 0o555, Format: tar.FormatPAX}
		if e.body != "" {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		}
		require.NoError(t, tw.WriteHeader(h))
		_, err := tw.Write([]byte(e.body))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err := zw.Write(raw.Bytes())
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	layerDesc := write(gz.Bytes())
	layerDesc.MediaType = mediaTypeLayerGzip
	configType, manifestType := mediaTypeConfig, mediaTypeManifest
	if fb.docker {
		layerDesc.MediaType, configType, manifestType = dockerLayerGzip, dockerConfig, dockerManifest
	}
	config := map[string]any{
		"architecture": "amd64",
		"os":           "windows",
		"created":      "2026-11-11T00:00:00Z",
		"config": map[string]any{
			"Env":  fb.env,
			"Cmd":  []string{`c:\windows\system32\cmd.exe`},
			"User": "ContainerUser",
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{digestOf(raw.Bytes())}},
		"history": []map[string]any{{"created": "2026-11-11T00:00:00Z", "created_by": "Apply image " + fb.osVersion}},
	}
	if fb.osVersion != "" {
		config["os.version"] = fb.osVersion
	}
	cb, err := json.Marshal(config)
	require.NoError(t, err)
	configDesc := write(cb)
	configDesc.MediaType = configType
	mb, err := json.Marshal(manifest{SchemaVersion: 2, MediaType: manifestType, Config: configDesc, Layers: []descriptor{layerDesc}})
	require.NoError(t, err)
	md := write(mb)
	md.MediaType = manifestType
	md.Platform = &platform{Architecture: "amd64", OS: "windows", OSVersion: fb.osVersion}
	top := index{SchemaVersion: 2, Manifests: []descriptor{md}}
	if fb.wrapIndex {
		ib, err := json.Marshal(index{SchemaVersion: 2, MediaType: mediaTypeIndex, Manifests: []descriptor{md}})
		require.NoError(t, err)
		id := write(ib)
		id.MediaType = mediaTypeIndex
		top.Manifests = []descriptor{id}
	}
	tb, err := json.Marshal(top)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "index.json"), tb, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(ociLayoutFile), 0o644))
	if !fb.asTar {
		return dir
	}
	p := filepath.Join(t.TempDir(), "base.tar")
	f, err := os.Create(p)
	require.NoError(t, err)
	tw = tar.NewWriter(f)
	require.NoError(t, filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	}))
	require.NoError(t, tw.Close())
	require.NoError(t, f.Close())
	return p
}

// nanoserverPath is the base's own PATH, as the real images set it.
const nanoserverPath = `PATH=C:\Windows\system32;C:\Windows`

// threeBases loads a synthetic base for every supported build.
func threeBases(t *testing.T) []baseImage {
	t.Helper()
	var out []baseImage
	for build, version := range map[string]string{"ltsc2019": "10.0.17763.8027", "ltsc2022": "10.0.20348.4405", "ltsc2025": "10.0.26100.7171"} {
		b, cleanup, err := loadBase(build, makeBase(t, fakeBase{osVersion: version, env: []string{nanoserverPath}}), t.TempDir())
		t.Cleanup(cleanup)
		require.NoError(t, err)
		out = append(out, b)
	}
	return out
}

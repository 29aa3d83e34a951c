package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLinuxImage(t *testing.T) {
	l, err := buildLinux(fakeBinary, testMeta)
	require.NoError(t, err)
	p := writeArchive(t, l, testMeta.created)

	images, err := verifyArchive(p, linuxExpectation())
	require.NoError(t, err)
	require.Len(t, images, 1)
	img := images[0]
	c := img.Config
	assert.Equal(t, platform{Architecture: "amd64", OS: "linux"}, img.Platform)
	assert.Equal(t, "linux", c.OS)
	assert.Equal(t, "amd64", c.Architecture)
	assert.Equal(t, []string{"/usr/local/bin/xosprobe"}, c.Config.Entrypoint)
	assert.Nil(t, c.Config.Cmd)
	assert.Equal(t, "/usr/local/bin/xosprobe", img.Resolved, "`xosprobe` resolves through PATH")
	assert.Contains(t, strings.Split(pathEnv(c.Config.Env, "linux"), ":"), "/usr/local/bin")
	assert.Equal(t, "65532:65532", c.Config.User, "the manifests' runAsUser/runAsGroup")
	assert.Equal(t, "/", c.Config.WorkingDir)
	assert.Equal(t, map[string]string{
		"org.opencontainers.image.title":    "xosprobe",
		"org.opencontainers.image.source":   "https://github.com/xosprobe/xosprobe",
		"org.opencontainers.image.version":  "v1.2.3",
		"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
		"org.opencontainers.image.created":  "2025-12-06T05:46:40Z",
	}, c.Config.Labels)
	_, hasLicence := c.Config.Labels["org.opencontainers.image.licenses"]
	assert.False(t, hasLicence, "the project has no licence to name")

	// The layout tarball: sorted entries, one mtime, every blob under its digest.
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	var names []string
	for _, h := range tarEntries(t, f) {
		names = append(names, h.Name)
		assert.True(t, h.ModTime.Equal(testMeta.created), "%s mtime %v", h.Name, h.ModTime)
	}
	assert.True(t, sort.StringsAreSorted(names), "sorted entries: %v", names)
	assert.Equal(t, []string{"blobs/", "blobs/sha256/"}, names[:2])
	assert.Equal(t, []string{"index.json", "oci-layout"}, names[len(names)-2:])
	assert.Len(t, names, 2+3+2, "config, layer and manifest blobs")
	a := archive{path: p}
	for _, n := range names[2 : len(names)-2] {
		r, done, err := a.open(n)
		require.NoError(t, err)
		h := sha256.New()
		_, err = io.Copy(h, r)
		done()
		require.NoError(t, err)
		assert.Equal(t, filepath.Base(n), hex.EncodeToString(h.Sum(nil)), "blob content matches its name")
	}

	// index.json names the image for containerd's importer and skopeo.
	var top index
	require.NoError(t, a.readJSON("index.json", &top))
	require.Len(t, top.Manifests, 1)
	assert.Equal(t, map[string]string{
		annotationContainerdName: "ghcr.io/xosprobe/xosprobe:dev-test",
		annotationRefName:        "dev-test",
	}, top.Manifests[0].Annotations)

	// The root filesystem: what is there, owned and moded as the runtime needs.
	var m manifest
	require.NoError(t, a.readJSON(blobName(top.Manifests[0].Digest), &m))
	require.Len(t, m.Layers, 1)
	assert.Equal(t, mediaTypeLayerGzip, m.Layers[0].MediaType)
	type file struct {
		mode     int64
		uid, gid int
	}
	got := map[string]file{}
	var layerNames []string
	require.NoError(t, eachLayerEntry(a, m.Layers[0], func(h *tar.Header, _ io.Reader) (bool, error) {
		got[h.Name] = file{h.Mode, h.Uid, h.Gid}
		layerNames = append(layerNames, h.Name)
		assert.True(t, h.ModTime.Equal(testMeta.created), "%s mtime", h.Name)
		return false, nil
	}))
	assert.True(t, sort.StringsAreSorted(layerNames), "sorted layer entries: %v", layerNames)
	assert.Equal(t, map[string]file{
		"etc/":                   {0o755, 0, 0},
		"etc/group":              {0o644, 0, 0},
		"etc/nsswitch.conf":      {0o644, 0, 0},
		"etc/passwd":             {0o644, 0, 0},
		"home/":                  {0o755, 0, 0},
		"home/nonroot/":          {0o700, 65532, 65532},
		"tmp/":                   {0o1777, 0, 0},
		"usr/":                   {0o755, 0, 0},
		"usr/local/":             {0o755, 0, 0},
		"usr/local/bin/":         {0o755, 0, 0},
		"usr/local/bin/xosprobe": {0o755, 0, 0},
	}, got)
	passwd, err := readLayerFile(a, m.Layers, "etc/passwd")
	require.NoError(t, err)
	assert.Contains(t, passwd, "nonroot:x:65532:65532:")
	group, err := readLayerFile(a, m.Layers, "etc/group")
	require.NoError(t, err)
	assert.Contains(t, group, "nonroot:x:65532:")
	bin, err := readLayerFile(a, m.Layers, "usr/local/bin/xosprobe")
	require.NoError(t, err)
	assert.Equal(t, string(fakeBinary), bin)
}

func TestLinuxImageReproducible(t *testing.T) {
	digest := func(t *testing.T, binary []byte, meta imageMeta) string {
		l, err := buildLinux(binary, meta)
		require.NoError(t, err)
		b, err := os.ReadFile(writeArchive(t, l, meta.created))
		require.NoError(t, err)
		var top index
		require.NoError(t, json.Unmarshal(extractIndex(t, b), &top))
		return top.Manifests[0].Digest + " " + digestOf(b)
	}
	base := digest(t, fakeBinary, testMeta)
	later := testMeta
	later.created = testMeta.created.Add(time.Second)
	otherRev := testMeta
	otherRev.revision = "fedcba9876543210fedcba9876543210fedcba98"
	for _, tc := range []struct {
		name   string
		binary []byte
		meta   imageMeta
		same   bool
	}{
		{"same inputs, same bytes", fakeBinary, testMeta, true},
		{"another source date", fakeBinary, later, false},
		{"another revision", fakeBinary, otherRev, false},
		{"another binary", append([]byte("x"), fakeBinary...), testMeta, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := digest(t, tc.binary, tc.meta)
			if tc.same {
				assert.Equal(t, base, got)
			} else {
				assert.NotEqual(t, base, got)
			}
		})
	}
}

func TestWindowsImage(t *testing.T) {
	bases := threeBases(t)
	l, err := buildWindows(fakeBinary, testMeta, bases)
	require.NoError(t, err)
	p := writeArchive(t, l, testMeta.created)

	images, err := verifyArchive(p, windowsExpectation(supportedWindowsBuilds()))
	require.NoError(t, err)
	require.Len(t, images, 3)
	var versions []string
	for _, img := range images {
		c := img.Config
		versions = append(versions, img.Platform.OSVersion)
		assert.Equal(t, "windows", img.Platform.OS)
		assert.Equal(t, "amd64", img.Platform.Architecture)
		assert.Equal(t, c.OSVersion, img.Platform.OSVersion, "the base's own os.version")
		assert.Equal(t, []string{`C:\xosprobe\xosprobe.exe`}, c.Config.Entrypoint)
		assert.Nil(t, c.Config.Cmd, "nanoserver's cmd.exe must not become the binary's arguments")
		assert.Equal(t, `C:\xosprobe\xosprobe.exe`, img.Resolved, "`xosprobe.exe` resolves through PATH")
		assert.Equal(t, []string{`PATH=C:\xosprobe;C:\Windows\system32;C:\Windows`}, c.Config.Env)
		assert.Equal(t, "ContainerUser", c.Config.User)
		assert.Equal(t, `C:\xosprobe`, c.Config.WorkingDir)
		assert.Equal(t, "v1.2.3", c.Config.Labels["org.opencontainers.image.version"])
		assert.Equal(t, testMeta.revision, c.Config.Labels["org.opencontainers.image.revision"])
		assert.Len(t, c.RootFS.DiffIDs, 2, "the base's layer and ours")
	}
	assert.ElementsMatch(t, []string{"10.0.17763.8027", "10.0.20348.4405", "10.0.26100.7171"}, versions)

	a := archive{path: p}
	var top index
	require.NoError(t, a.readJSON("index.json", &top))
	require.Len(t, top.Manifests, 1, "one multi-platform index")
	assert.Equal(t, mediaTypeIndex, top.Manifests[0].MediaType)
	assert.Equal(t, "ghcr.io/xosprobe/xosprobe:dev-test", top.Manifests[0].Annotations[annotationContainerdName])

	// Our layer: Files/ and Hives/, the binary under Files/xosprobe, every
	// entry with the security descriptor that lets ContainerUser run it.
	var img index
	require.NoError(t, a.readJSON(blobName(top.Manifests[0].Digest), &img))
	var m manifest
	require.NoError(t, a.readJSON(blobName(img.Manifests[0].Digest), &m))
	require.Len(t, m.Layers, 2)
	assert.Equal(t, mediaTypeLayerGzip, m.Layers[0].MediaType, "the base layer keeps its content, under the OCI media type")
	var names []string
	require.NoError(t, eachLayerEntry(a, m.Layers[1], func(h *tar.Header, _ io.Reader) (bool, error) {
		names = append(names, h.Name)
		assert.Equal(t, windowsRawSD, h.PAXRecords["MSWINDOWS.rawsd"], h.Name)
		return false, nil
	}))
	assert.Equal(t, []string{"Files", "Files/xosprobe", "Files/xosprobe/xosprobe.exe", "Hives"}, names)
	exe, err := readLayerFile(a, m.Layers, "Files/xosprobe/xosprobe.exe")
	require.NoError(t, err)
	assert.Equal(t, string(fakeBinary), exe)
	// Base layers are copied as they were.
	cmd, err := readLayerFile(a, m.Layers, "Files/Windows/System32/cmd.exe")
	require.NoError(t, err)
	assert.Equal(t, "MZ cmd", cmd)
}

func TestWindowsBaseForms(t *testing.T) {
	for _, tc := range []struct {
		name string
		fb   fakeBase
	}{
		{"oci directory", fakeBase{}},
		{"oci-archive tarball", fakeBase{asTar: true}},
		{"docker media types (crane pull)", fakeBase{docker: true}},
		{"tag pointing at a multi-platform index", fakeBase{wrapIndex: true}},
		{"no PATH in the base", fakeBase{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := tc.fb
			fb.osVersion = "10.0.20348.4405"
			if tc.name != "no PATH in the base" {
				fb.env = []string{nanoserverPath}
			}
			b, cleanup, err := loadBase("ltsc2022", makeBase(t, fb), t.TempDir())
			t.Cleanup(cleanup)
			require.NoError(t, err)
			l, err := buildWindows(fakeBinary, testMeta, []baseImage{b})
			require.NoError(t, err)
			images, err := verifyArchive(writeArchive(t, l, testMeta.created), windowsExpectation([]string{"ltsc2022"}))
			require.NoError(t, err)
			require.Len(t, images, 1)
			assert.Equal(t, []string{`PATH=C:\xosprobe;C:\Windows\system32;C:\Windows`}, images[0].Config.Config.Env)
		})
	}
}

func TestBadWindowsBase(t *testing.T) {
	missingLayer := func(t *testing.T) string {
		dir := makeBase(t, fakeBase{osVersion: "10.0.20348.1", env: []string{nanoserverPath}})
		b, _, err := loadBase("ltsc2022", dir, t.TempDir())
		require.NoError(t, err)
		require.NoError(t, os.Remove(filepath.Join(dir, blobPath(b.manifest.Layers[0].Digest))))
		return dir
	}
	for _, tc := range []struct {
		name, build string
		src         func(t *testing.T) string
		want        string
	}{
		{"no such path", "ltsc2022", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nanoserver-ltsc2022") }, "base ltsc2022: stat "},
		{"another build's base", "ltsc2019", func(t *testing.T) string {
			return makeBase(t, fakeBase{osVersion: "10.0.20348.4405"})
		}, `os.version "10.0.20348.4405" is not build 10.0.17763 (ltsc2019)`},
		{"no os.version", "ltsc2022", func(t *testing.T) string { return makeBase(t, fakeBase{}) }, "no os.version"},
		{"not a layout", "ltsc2022", func(t *testing.T) string { return t.TempDir() }, "not an OCI image layout"},
		{"layer not pulled", "ltsc2022", missingLayer, "is not in the layout"},
		{"unknown build", "ltsc2016", func(t *testing.T) string { return t.TempDir() }, "unknown Windows build"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, cleanup, err := loadBase(tc.build, tc.src(t), t.TempDir())
			t.Cleanup(cleanup)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "base "+tc.build)
		})
	}
}

func TestCorruptBaseBlobNotShipped(t *testing.T) {
	dir := makeBase(t, fakeBase{osVersion: "10.0.20348.1", env: []string{nanoserverPath}})
	b, _, err := loadBase("ltsc2022", dir, t.TempDir())
	require.NoError(t, err)
	layer := filepath.Join(dir, blobPath(b.manifest.Layers[0].Digest))
	content, err := os.ReadFile(layer)
	require.NoError(t, err)
	content[len(content)/2] ^= 0xff
	require.NoError(t, os.WriteFile(layer, content, 0o644))
	l, err := buildWindows(fakeBinary, testMeta, []baseImage{b})
	require.NoError(t, err)
	err = l.writeTar(&bytes.Buffer{}, testMeta.created)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "content has digest")
}

// The checks the images are held to: each mutation must be caught, or the
// image tests above could pass with an image that does not work.
func TestVerifyRejects(t *testing.T) {
	linuxWith := func(mutate func(c map[string]any)) func(t *testing.T) (string, expectation) {
		return func(t *testing.T) (string, expectation) {
			l, err := buildLinux(fakeBinary, testMeta)
			require.NoError(t, err)
			rewriteConfigs(t, l, func(c map[string]any, _ *descriptor) { mutate(c) })
			return writeArchive(t, l, testMeta.created), linuxExpectation()
		}
	}
	linuxRootfsWith := func(mutate func([]entry) []entry) func(t *testing.T) (string, expectation) {
		return func(t *testing.T) (string, expectation) {
			l, err := linuxLayout(mutate(linuxRootfs(fakeBinary)), testMeta)
			require.NoError(t, err)
			return writeArchive(t, l, testMeta.created), linuxExpectation()
		}
	}
	windowsWith := func(mutate func(c map[string]any, d *descriptor)) func(t *testing.T) (string, expectation) {
		return func(t *testing.T) (string, expectation) {
			l, err := buildWindows(fakeBinary, testMeta, threeBases(t))
			require.NoError(t, err)
			rewriteConfigs(t, l, mutate)
			return writeArchive(t, l, testMeta.created), windowsExpectation(supportedWindowsBuilds())
		}
	}
	run := func(c map[string]any) map[string]any { return c["config"].(map[string]any) }
	withoutBinary := func(es []entry) []entry {
		return slices.DeleteFunc(es, func(e entry) bool { return e.name == "usr/local/bin/xosprobe" })
	}
	for _, tc := range []struct {
		name  string
		image func(t *testing.T) (string, expectation)
		want  string
	}{
		{"linux: PATH lacks the binary's directory", linuxWith(func(c map[string]any) { run(c)["Env"] = []string{"PATH=/usr/bin:/bin"} }), `"xosprobe" is not on PATH`},
		{"linux: no PATH", linuxWith(func(c map[string]any) { run(c)["Env"] = nil }), "no PATH in Env"},
		{"linux: binary elsewhere than the Entrypoint", linuxWith(func(c map[string]any) { run(c)["Entrypoint"] = []string{"/xosprobe"} }), "is not the binary"},
		{"linux: no binary in the layers", linuxRootfsWith(withoutBinary), `"xosprobe" is not on PATH`},
		{"linux: binary not executable", linuxRootfsWith(func(es []entry) []entry {
			for i := range es {
				if es[i].name == "usr/local/bin/xosprobe" {
					es[i].mode = 0o644
				}
			}
			return es
		}), "not executable"},
		{"linux: root", linuxWith(func(c map[string]any) { run(c)["User"] = "0:0" }), "is root"},
		{"linux: no user", linuxWith(func(c map[string]any) { run(c)["User"] = "" }), "not a numeric uid"},
		{"linux: user by name", linuxWith(func(c map[string]any) { run(c)["User"] = "nonroot" }), "not a numeric uid"},
		{"linux: user without passwd entry", linuxWith(func(c map[string]any) { run(c)["User"] = "1000:1000" }), "no /etc/passwd entry"},
		{"linux: no passwd", linuxRootfsWith(func(es []entry) []entry {
			return slices.DeleteFunc(es, func(e entry) bool { return e.name == "etc/passwd" })
		}), "no /etc/passwd in the image"},
		{"linux: no revision label", linuxWith(func(c map[string]any) {
			delete(run(c)["Labels"].(map[string]any), "org.opencontainers.image.revision")
		}), "label org.opencontainers.image.revision is not set"},
		{"windows: PATH lacks C:\\xosprobe", windowsWith(func(c map[string]any, _ *descriptor) {
			run(c)["Env"] = []string{`PATH=C:\Windows\system32;C:\Windows`}
		}), `"xosprobe.exe" is not on PATH`},
		{"windows: ContainerAdministrator", windowsWith(func(c map[string]any, _ *descriptor) { run(c)["User"] = "ContainerAdministrator" }), "an administrator"},
		{"windows: no user", windowsWith(func(c map[string]any, _ *descriptor) { run(c)["User"] = "" }), "no User"},
		{"windows: index entry without os.version", windowsWith(func(c map[string]any, d *descriptor) {
			if strings.HasPrefix(d.Platform.OSVersion, "10.0.26100.") {
				d.Platform.OSVersion = ""
			}
		}), "no image for Windows ltsc2025"},
		{"windows: os.version differs from the config's", windowsWith(func(c map[string]any, d *descriptor) {
			if strings.HasPrefix(d.Platform.OSVersion, "10.0.17763.") {
				d.Platform.OSVersion = "10.0.17763.1"
			}
		}), "differs from the config's"},
		{"windows: one build twice", windowsWith(func(c map[string]any, d *descriptor) {
			if strings.HasPrefix(d.Platform.OSVersion, "10.0.26100.") {
				d.Platform.OSVersion, c["os.version"] = "10.0.20348.9", "10.0.20348.9"
			}
		}), "build ltsc2022 has 2 images"},
		{"windows: a build missing from the index", func(t *testing.T) (string, expectation) {
			bases := threeBases(t)
			bases = slices.DeleteFunc(bases, func(b baseImage) bool { return b.build == "ltsc2025" })
			l, err := buildWindows(fakeBinary, testMeta, bases)
			require.NoError(t, err)
			return writeArchive(t, l, testMeta.created), windowsExpectation(supportedWindowsBuilds())
		}, "no image for Windows ltsc2025"},
		{"windows image checked as linux", windowsWith(func(map[string]any, *descriptor) {}), "want linux/amd64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, want := tc.image(t)
			if tc.name == "windows image checked as linux" {
				want = linuxExpectation()
			}
			_, err := verifyArchive(p, want)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// rewriteConfigs applies mutate to every image config of l (and to its index
// descriptor), re-adding the changed blobs under their new digests.
func rewriteConfigs(t *testing.T, l *layout, mutate func(config map[string]any, d *descriptor)) {
	t.Helper()
	rewriteManifest := func(d *descriptor) {
		var m manifest
		require.NoError(t, json.Unmarshal(l.blobs[d.Digest].data, &m))
		var c map[string]any
		require.NoError(t, json.Unmarshal(l.blobs[m.Config.Digest].data, &c))
		mutate(c, d)
		var err error
		m.Config, err = l.addJSON(mediaTypeConfig, c)
		require.NoError(t, err)
		nd, err := l.addJSON(mediaTypeManifest, m)
		require.NoError(t, err)
		d.Digest, d.Size = nd.Digest, nd.Size
	}
	for i := range l.index.Manifests {
		d := &l.index.Manifests[i]
		if d.MediaType == mediaTypeManifest {
			rewriteManifest(d)
			continue
		}
		var img index
		require.NoError(t, json.Unmarshal(l.blobs[d.Digest].data, &img))
		for j := range img.Manifests {
			rewriteManifest(&img.Manifests[j])
		}
		nd, err := l.addJSON(mediaTypeIndex, img)
		require.NoError(t, err)
		d.Digest, d.Size = nd.Digest, nd.Size
	}
}

// extractIndex returns index.json from an archive's bytes.
func extractIndex(t *testing.T, archiveBytes []byte) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "a.tar")
	require.NoError(t, os.WriteFile(p, archiveBytes, 0o644))
	r, done, err := archive{path: p}.open("index.json")
	require.NoError(t, err)
	defer done()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(r)
	require.NoError(t, err)
	return buf.Bytes()
}

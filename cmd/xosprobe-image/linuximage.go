package main

import (
	"fmt"
	"time"
)

// The Linux image's fixed shape: what `kubectl exec ... -- xosprobe check` and
// the manifests' securityContext (runAsUser/runAsGroup 65532) rely on.
const (
	linuxBinaryPath = "/usr/local/bin/xosprobe"
	linuxPath       = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	linuxUser       = "65532:65532"
)

// The account files: root and nobody as every distribution has them, and
// nonroot (65532, distroless' convention) for the user the image runs as, so
// that user and group lookups (id, a shell a debug container brings, Go's
// os/user) name the user instead of failing.
const (
	etcPasswd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	etcGroup = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"nonroot:x:65532:\n"
	// Go's resolver reads the hosts line to order /etc/hosts (which the kubelet
	// mounts) before DNS, as glibc does.
	etcNsswitch = "hosts: files dns\n"
)

// imageMeta is what the labels and the reference say about a build.
type imageMeta struct {
	name     string // full reference the image is imported as, e.g. ghcr.io/xosprobe/xosprobe:dev-linux
	version  string
	revision string
	source   string
	created  time.Time
}

// labels are the OCI annotation keys as config labels (Docker and kubectl
// describe show them); licenses is left out while the project has no licence.
func (m imageMeta) labels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":    "xosprobe",
		"org.opencontainers.image.source":   m.source,
		"org.opencontainers.image.version":  m.version,
		"org.opencontainers.image.revision": m.revision,
		"org.opencontainers.image.created":  m.created.UTC().Format(time.RFC3339),
	}
}

// refAnnotations name the image for skopeo (ref.name, the tag) and for
// containerd's importer (the full reference).
func (m imageMeta) refAnnotations() map[string]string {
	a := map[string]string{annotationContainerdName: m.name}
	if tag := referenceTag(m.name); tag != "" {
		a[annotationRefName] = tag
	}
	return a
}

// referenceTag is the tag of name, or "" when it has none.
func referenceTag(name string) string {
	for i := len(name) - 1; i >= 0; i-- {
		switch name[i] {
		case ':':
			return name[i+1:]
		case '/', '@':
			return ""
		}
	}
	return ""
}

// linuxRootfs is the whole Linux filesystem on an empty base: one static binary
// and the few files the runtime and tooling look for. No CA bundle: the binary
// talks TLS only to the API server, with the service account's CA.
func linuxRootfs(binary []byte) []entry {
	return []entry{
		{name: "etc/", dir: true, mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(etcGroup)},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte(etcNsswitch)},
		{name: "etc/passwd", mode: 0o644, data: []byte(etcPasswd)},
		{name: "home/", dir: true, mode: 0o755},
		{name: "home/nonroot/", dir: true, mode: 0o700, uid: 65532, gid: 65532},
		// Go's os.TempDir default; with a read-only root an emptyDir can mount here.
		{name: "tmp/", dir: true, mode: 0o1777},
		{name: "usr/", dir: true, mode: 0o755},
		{name: "usr/local/", dir: true, mode: 0o755},
		{name: "usr/local/bin/", dir: true, mode: 0o755},
		{name: "usr/local/bin/xosprobe", mode: 0o755, data: binary},
	}
}

// buildLinux assembles the linux/amd64 image onto scratch as an OCI layout.
func buildLinux(binary []byte, meta imageMeta) (*layout, error) {
	if len(binary) == 0 {
		return nil, fmt.Errorf("the xosprobe binary is empty")
	}
	return linuxLayout(linuxRootfs(binary), meta)
}

// linuxLayout is the image of one layer of rootfs entries.
func linuxLayout(rootfs []entry, meta imageMeta) (*layout, error) {
	layer, err := buildLayer(rootfs, meta.created)
	if err != nil {
		return nil, err
	}
	created := meta.created.UTC().Format(time.RFC3339)
	config := map[string]any{
		"created":      created,
		"architecture": "amd64",
		"os":           "linux",
		"config": map[string]any{
			"User":       linuxUser,
			"Env":        []string{"PATH=" + linuxPath},
			"Entrypoint": []string{linuxBinaryPath},
			"WorkingDir": "/",
			"Labels":     meta.labels(),
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layer.diffID}},
		"history": []map[string]any{{
			"created":    created,
			"created_by": "xosprobe-image linux: " + linuxBinaryPath + ", /etc/passwd, /etc/group, /etc/nsswitch.conf, /home/nonroot, /tmp",
		}},
	}
	l := newLayout()
	configDesc, err := l.addJSON(mediaTypeConfig, config)
	if err != nil {
		return nil, err
	}
	layerDesc := l.addBytes(mediaTypeLayerGzip, layer.gz)
	manifestDesc, err := l.addJSON(mediaTypeManifest, manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        configDesc,
		Layers:        []descriptor{layerDesc},
	})
	if err != nil {
		return nil, err
	}
	manifestDesc.Platform = &platform{Architecture: "amd64", OS: "linux"}
	manifestDesc.Annotations = meta.refAnnotations()
	l.index.Manifests = []descriptor{manifestDesc}
	return l, nil
}

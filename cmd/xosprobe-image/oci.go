package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Media types of the OCI image spec (v1.1) and the Docker types a pulled base may carry.
const (
	mediaTypeIndex       = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig      = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayerGzip   = "application/vnd.oci.image.layer.v1.tar+gzip"
	mediaTypeLayerTar    = "application/vnd.oci.image.layer.v1.tar"
	mediaTypeForeignGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	mediaTypeForeignTar  = "application/vnd.oci.image.layer.nondistributable.v1.tar"

	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerConfig       = "application/vnd.docker.container.image.v1+json"
	dockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerForeignGzip  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

	// Annotation keys: the OCI reference name and the full name containerd's
	// importer (ctr images import) gives the image.
	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"

	ociLayoutFile = `{"imageLayoutVersion":"1.0.0"}`
)

// platform is an OCI platform; OSVersion selects a Windows build.
type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	OSVersion    string `json:"os.version,omitempty"`
}

// descriptor points at a blob by digest.
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	URLs        []string          `json:"urls,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

// manifest is an image manifest (OCI or Docker schema 2: the same shape).
type manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Config        descriptor        `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// index is an image index (index.json of a layout, or a multi-platform image).
type index struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	Manifests     []descriptor      `json:"manifests"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// blob is the content behind a digest: in memory, or a file of a base layout
// that is checked against its digest while it is copied.
type blob struct {
	data []byte
	path string
	size int64
}

// layout collects the blobs and the top-level index of an OCI image layout
// and writes it as a tarball with sorted entries and one fixed mtime.
type layout struct {
	blobs map[string]blob
	index index
}

func newLayout() *layout {
	return &layout{blobs: map[string]blob{}, index: index{SchemaVersion: 2, MediaType: mediaTypeIndex}}
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// addBytes stores b and returns its descriptor.
func (l *layout) addBytes(mediaType string, b []byte) descriptor {
	d := digestOf(b)
	l.blobs[d] = blob{data: b, size: int64(len(b))}
	return descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// addJSON stores v as compact JSON (map keys sorted by encoding/json, so stable).
func (l *layout) addJSON(mediaType string, v any) (descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return descriptor{}, fmt.Errorf("encoding %s: %w", mediaType, err)
	}
	return l.addBytes(mediaType, b), nil
}

// addFile references a blob of another layout by path; its digest is verified on write.
func (l *layout) addFile(d descriptor, path string) {
	l.blobs[d.Digest] = blob{path: path, size: d.Size}
}

// writeTar writes the layout as a tar (the oci-archive format of skopeo and
// containerd's importer). Entries are sorted and all carry mtime.
func (l *layout) writeTar(w io.Writer, mtime time.Time) error {
	tw := tar.NewWriter(w)
	indexJSON, err := json.Marshal(l.index)
	if err != nil {
		return fmt.Errorf("encoding index.json: %w", err)
	}
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(name string, size int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: mtime, Format: tar.FormatPAX})
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	digests := make([]string, 0, len(l.blobs))
	for d := range l.blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		b := l.blobs[d]
		if err := file("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), b.size); err != nil {
			return err
		}
		if b.path == "" {
			if _, err := tw.Write(b.data); err != nil {
				return err
			}
			continue
		}
		if err := copyVerified(tw, b.path, d, b.size); err != nil {
			return err
		}
	}
	if err := file("index.json", int64(len(indexJSON))); err != nil {
		return err
	}
	if _, err := tw.Write(indexJSON); err != nil {
		return err
	}
	if err := file("oci-layout", int64(len(ociLayoutFile))); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, ociLayoutFile); err != nil {
		return err
	}
	return tw.Close()
}

// copyVerified copies a base blob and fails if its size or digest is not the
// one its manifest names: a truncated or corrupt pull must not ship.
func copyVerified(w io.Writer, path, digest string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("blob %s: %w", digest, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(f, size+1))
	if err != nil {
		return fmt.Errorf("blob %s (%s): %w", digest, path, err)
	}
	if n != size {
		return fmt.Errorf("blob %s (%s): %d bytes, its descriptor says %d", digest, path, n, size)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("blob %s (%s): content has digest %s", digest, path, got)
	}
	return nil
}

// writeTemp writes a temporary file beside path and returns its name: the
// caller renames it over path once it is checked, so a failed build never
// leaves a half-written or unchecked image at the stable output path.
func writeTemp(path string, write func(io.Writer) error) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", err
	}
	if err := write(tmp); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

package cluster

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// ImageFile is one file of a single-layer image built by WriteImage.
type ImageFile struct {
	Path string // absolute path inside the image, e.g. /pause
	Mode int64  // permission bits, e.g. 0o755
	Data []byte
}

// ImageSpec describes a single-layer linux/amd64 image assembled without a
// registry or a Docker engine, for import into a kubelet node's runtime.
type ImageSpec struct {
	// Ref is the image's full name, e.g. xosprobe-e2e.local/pause:1; the
	// runtime lists the image under it after import.
	Ref        string
	Files      []ImageFile
	Entrypoint []string
	Cmd        []string
	Env        []string
	User       string // e.g. "65532"
}

// OCI media types and the annotation containerd names imported images by.
const (
	mediaTypeIndex       = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig      = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer       = "application/vnd.oci.image.layer.v1.tar"
	annotationImageName  = "io.containerd.image.name"
	annotationRefName    = "org.opencontainers.image.ref.name"
	ociLayoutVersionFile = `{"imageLayoutVersion":"1.0.0"}`
)

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *ociPlatform      `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type ociPlatform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type ociIndex struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Manifests     []ociDescriptor `json:"manifests"`
}

type ociManifest struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Config        ociDescriptor   `json:"config"`
	Layers        []ociDescriptor `json:"layers"`
}

type ociImageConfig struct {
	Created      string         `json:"created"`
	Architecture string         `json:"architecture"`
	OS           string         `json:"os"`
	Config       ociRunConfig   `json:"config"`
	RootFS       ociRootFS      `json:"rootfs"`
	History      []ociHistEntry `json:"history"`
}

type ociRunConfig struct {
	User       string   `json:"User,omitempty"`
	Env        []string `json:"Env,omitempty"`
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
}

type ociRootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type ociHistEntry struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

// imageEpoch stamps every file and the config, so the same inputs give the
// same digests.
var imageEpoch = time.Unix(0, 0).UTC()

// WriteImage writes spec as an OCI image layout in a tar stream (what
// `ctr images import` reads): oci-layout, index.json naming the image, and
// the blobs of one manifest, its config and one uncompressed layer. The
// output is deterministic.
func WriteImage(w io.Writer, spec ImageSpec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	layer, err := imageLayer(spec.Files)
	if err != nil {
		return fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	layerDesc := descriptorOf(mediaTypeLayer, layer)
	cfg, err := json.Marshal(ociImageConfig{
		Created:      imageEpoch.Format(time.RFC3339),
		Architecture: "amd64",
		OS:           "linux",
		Config:       ociRunConfig{User: spec.User, Env: spec.Env, Entrypoint: spec.Entrypoint, Cmd: spec.Cmd},
		RootFS:       ociRootFS{Type: "layers", DiffIDs: []string{layerDesc.Digest}}, // uncompressed: diff ID = digest
		History:      []ociHistEntry{{Created: imageEpoch.Format(time.RFC3339), CreatedBy: "xosprobe e2e cluster.WriteImage"}},
	})
	if err != nil {
		return err
	}
	cfgDesc := descriptorOf(mediaTypeConfig, cfg)
	manifest, err := json.Marshal(ociManifest{SchemaVersion: 2, MediaType: mediaTypeManifest, Config: cfgDesc, Layers: []ociDescriptor{layerDesc}})
	if err != nil {
		return err
	}
	manDesc := descriptorOf(mediaTypeManifest, manifest)
	manDesc.Platform = &ociPlatform{Architecture: "amd64", OS: "linux"}
	manDesc.Annotations = map[string]string{annotationImageName: spec.Ref, annotationRefName: imageTag(spec.Ref)}
	index, err := json.Marshal(ociIndex{SchemaVersion: 2, MediaType: mediaTypeIndex, Manifests: []ociDescriptor{manDesc}})
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(ociLayoutVersionFile)},
		{"index.json", index},
		{"blobs/sha256/" + strings.TrimPrefix(manDesc.Digest, "sha256:"), manifest},
		{"blobs/sha256/" + strings.TrimPrefix(cfgDesc.Digest, "sha256:"), cfg},
		{"blobs/sha256/" + strings.TrimPrefix(layerDesc.Digest, "sha256:"), layer},
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: imageEpoch}); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: imageEpoch}); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// WriteImageFile writes spec's OCI layout tar to path.
func WriteImageFile(path string, spec ImageSpec) error {
	var buf bytes.Buffer
	if err := WriteImage(&buf, spec); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func (s ImageSpec) validate() error {
	var errs []error
	if s.Ref == "" || !strings.Contains(s.Ref, "/") || imageTag(s.Ref) == "" {
		errs = append(errs, fmt.Errorf("image ref %q: want host/name:tag", s.Ref))
	}
	if len(s.Files) == 0 {
		errs = append(errs, fmt.Errorf("image %s: no files", s.Ref))
	}
	seen := map[string]bool{}
	for _, f := range s.Files {
		clean := path.Clean(f.Path)
		switch {
		case !path.IsAbs(f.Path) || clean == "/":
			errs = append(errs, fmt.Errorf("image %s: file path %q is not an absolute file path", s.Ref, f.Path))
		case clean != f.Path:
			errs = append(errs, fmt.Errorf("image %s: file path %q is not clean (%s)", s.Ref, f.Path, clean))
		case seen[clean]:
			errs = append(errs, fmt.Errorf("image %s: file %s given twice", s.Ref, clean))
		}
		seen[clean] = true
	}
	return errors.Join(errs...)
}

// imageTag returns the tag of ref ("" without one); a port in the host part
// is not a tag.
func imageTag(ref string) string {
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ""
	}
	return ref[i+1:]
}

// imageLayer tars files, with their parent directories, in path order.
func imageLayer(files []ImageFile) ([]byte, error) {
	sorted := append([]ImageFile(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range sorted {
		rel := strings.TrimPrefix(f.Path, "/")
		var parents []string
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: imageEpoch}); err != nil {
				return nil, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: f.Mode, Size: int64(len(f.Data)), ModTime: imageEpoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func descriptorOf(mediaType string, blob []byte) ociDescriptor {
	sum := sha256.Sum256(blob)
	return ociDescriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(blob))}
}

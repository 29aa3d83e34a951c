package cluster

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// readTar returns the regular files of a tar stream by name.
func readTar(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = data
	}
}

func blob(t *testing.T, layout map[string][]byte, d ociDescriptor) []byte {
	t.Helper()
	b, ok := layout["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
	if !ok {
		t.Fatalf("blob %s missing from the layout", d.Digest)
	}
	sum := sha256.Sum256(b)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != d.Digest || int64(len(b)) != d.Size {
		t.Fatalf("blob %s: content digest %s size %d, descriptor says size %d", d.Digest, got, len(b), d.Size)
	}
	return b
}

func TestWriteImage(t *testing.T) {
	spec := ImageSpec{
		Ref:        "xosprobe-e2e.local/podtool:1",
		Files:      []ImageFile{{Path: "/bin/podtool", Mode: 0o755, Data: []byte("binary")}, {Path: "/pause", Mode: 0o755, Data: []byte("p")}},
		Entrypoint: []string{"/bin/podtool"},
		Env:        []string{"PATH=/bin"},
		User:       "65532",
	}
	var out bytes.Buffer
	if err := WriteImage(&out, spec); err != nil {
		t.Fatal(err)
	}
	layout := readTar(t, out.Bytes())
	if string(layout["oci-layout"]) != ociLayoutVersionFile {
		t.Errorf("oci-layout = %q", layout["oci-layout"])
	}
	var index ociIndex
	if err := json.Unmarshal(layout["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("index has %d manifests, want 1", len(index.Manifests))
	}
	md := index.Manifests[0]
	if md.Annotations[annotationImageName] != spec.Ref || md.Annotations[annotationRefName] != "1" {
		t.Errorf("index annotations %v, want the image named %s", md.Annotations, spec.Ref)
	}
	if md.Platform == nil || md.Platform.OS != "linux" || md.Platform.Architecture != "amd64" {
		t.Errorf("platform %+v, want linux/amd64", md.Platform)
	}
	var man ociManifest
	if err := json.Unmarshal(blob(t, layout, md), &man); err != nil {
		t.Fatal(err)
	}
	var cfg ociImageConfig
	if err := json.Unmarshal(blob(t, layout, man.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(man.Layers) != 1 || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != man.Layers[0].Digest {
		t.Fatalf("layers %v, diff IDs %v: want one uncompressed layer whose diff ID is its digest", man.Layers, cfg.RootFS.DiffIDs)
	}
	if cfg.Config.User != "65532" || cfg.Config.Entrypoint[0] != "/bin/podtool" || cfg.Config.Env[0] != "PATH=/bin" {
		t.Errorf("run config %+v", cfg.Config)
	}
	layer := readTar(t, blob(t, layout, man.Layers[0]))
	if string(layer["bin/podtool"]) != "binary" || string(layer["pause"]) != "p" {
		t.Errorf("layer files %v", layer)
	}

	var again bytes.Buffer
	if err := WriteImage(&again, spec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), again.Bytes()) {
		t.Error("the same spec gave two different layouts")
	}
}

func TestWriteImageRejects(t *testing.T) {
	file := []ImageFile{{Path: "/x", Mode: 0o755, Data: []byte("x")}}
	for _, tc := range []struct {
		name string
		spec ImageSpec
		want string
	}{
		{"no tag", ImageSpec{Ref: "xosprobe-e2e.local/x", Files: file}, `image ref "xosprobe-e2e.local/x": want host/name:tag`},
		{"port is not a tag", ImageSpec{Ref: "registry:5000/x", Files: file}, "want host/name:tag"},
		{"no files", ImageSpec{Ref: "h/x:1"}, "image h/x:1: no files"},
		{"relative path", ImageSpec{Ref: "h/x:1", Files: []ImageFile{{Path: "x"}}}, `file path "x" is not an absolute file path`},
		{"unclean path", ImageSpec{Ref: "h/x:1", Files: []ImageFile{{Path: "/a/../x"}}}, `file path "/a/../x" is not clean`},
		{"duplicate", ImageSpec{Ref: "h/x:1", Files: append(file, file...)}, "file /x given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteImage(io.Discard, tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

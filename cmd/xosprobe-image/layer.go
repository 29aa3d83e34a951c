package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"sort"
	"time"
)

// entry is one file or directory of a layer.
type entry struct {
	name       string // slash-separated, relative to the layer root
	dir        bool
	mode       int64
	uid, gid   int
	data       []byte
	paxRecords map[string]string
}

// builtLayer is a gzip'd layer tar with the two digests an image needs: the
// blob's (manifest) and the uncompressed tar's (config rootfs.diff_ids).
type builtLayer struct {
	gz     []byte
	diffID string
}

// buildLayer writes entries sorted by name, every one with mtime, in PAX format,
// then gzips without a name or timestamp in the gzip header: the same entries
// and mtime give the same bytes.
func buildLayer(entries []entry, mtime time.Time) (builtLayer, error) {
	sorted := append([]entry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for i, e := range sorted {
		if i > 0 && sorted[i-1].name == e.name {
			return builtLayer{}, fmt.Errorf("layer entry %q given twice", e.name)
		}
		h := &tar.Header{
			Name:       e.name,
			Mode:       e.mode,
			Uid:        e.uid,
			Gid:        e.gid,
			ModTime:    mtime,
			Format:     tar.FormatPAX,
			PAXRecords: e.paxRecords,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return builtLayer{}, fmt.Errorf("layer entry %q: %w", e.name, err)
		}
		if !e.dir {
			if _, err := tw.Write(e.data); err != nil {
				return builtLayer{}, fmt.Errorf("layer entry %q: %w", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return builtLayer{}, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return builtLayer{}, err
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return builtLayer{}, err
	}
	if err := zw.Close(); err != nil {
		return builtLayer{}, err
	}
	return builtLayer{gz: gz.Bytes(), diffID: digestOf(raw.Bytes())}, nil
}

package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// tempDir is t.TempDir that also cleans up under Wine, whose missing
// FileDispositionInfoEx makes os.RemoveAll (and so t.TempDir's cleanup) fail:
// it removes the files and directories one by one with os.Remove.
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "xosprobe-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var paths []string
		_ = filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			if err == nil {
				paths = append(paths, p)
			}
			return nil
		})
		slices.Reverse(paths) // children before their directories
		for _, p := range paths {
			if err := os.Remove(p); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return dir
}

// Package testremote reaches into a file:// remote from tests: it lists
// the objects a remote.FileStore keeps and ages them, so that a test can
// exercise what the garbage collector does with objects older than its
// minimum age without waiting for them to grow old.
//
// A FileStore keeps the object at key "a/b/c" as the file <root>/a/b/c and
// reports the file's modification time as the object's Modified time
// (remote.ObjectInfo); files being written live under <root>/.cambium-tmp,
// which is not an object. The functions take the root directory, the path
// of a file:// URL. They are safe to call while stores use the root, but
// an object written after Age returns is as young as ever.
//
//	testremote.Age(t, root, time.Hour)
//	keys := testremote.Keys(t, root, "v/orders.db/c/")
package testremote

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// tmpDir is the FileStore's directory of files being written.
const tmpDir = ".cambium-tmp"

// Keys returns the keys of the objects under root whose key starts with
// prefix, sorted.
func Keys(t testing.TB, root, prefix string) []string {
	t.Helper()
	var keys []string
	walk(t, root, func(key, path string) {
		if strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
	})
	slices.Sort(keys)
	return keys
}

// Age moves the modification time of every object under root back by d.
func Age(t testing.TB, root string, d time.Duration) {
	t.Helper()
	walk(t, root, func(key, path string) {
		fi, err := os.Stat(path)
		if err == nil {
			mt := fi.ModTime().Add(-d)
			err = os.Chtimes(path, mt, mt)
		}
		if err != nil && !os.IsNotExist(err) { // a collector may delete it meanwhile
			t.Fatalf("age object %s: %v", key, err)
		}
	})
}

// walk calls fn for each object file under root, with its key.
func walk(t testing.TB, root string, fn func(key, path string)) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel == tmpDir {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			fn(filepath.ToSlash(rel), path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk the file remote %s: %v", root, err)
	}
}

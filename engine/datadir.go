package engine

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// IsDataDir reports whether Open has ever opened dir as a data directory,
// so that tools which only read can refuse a mistyped directory rather than
// create an empty store in it.
func IsDataDir(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, lockFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

package engine

import (
	"path/filepath"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// walFS gives commits two durability classes over one Pebble write-ahead
// log. Every commit is applied with pebble.Sync, so Pebble writes its log
// record to the file (write(2)) before the commit returns: a Buffered
// commit survives the process being killed. Whether that sync also reaches
// stable storage (fsync) depends on whether a Durable commit is waiting:
// the log file's Sync is real only while one is. Because an fsync covers
// everything written before it, a Durable commit also makes every earlier
// Buffered commit durable, as SQLite's own NORMAL mode would.
//
// Log files are always synced for real before they are closed, so that a
// log Pebble has rotated away from is never left torn on disk; other files
// (tables, the manifest) are never touched.
type walFS struct {
	vfs.FS
	durable *atomic.Int64 // Durable commits waiting for stable storage
}

func (fs walFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(name, f, err)
}

func (fs walFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(newname, f, err)
}

func (fs walFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || filepath.Ext(name) != ".log" {
		return f, err
	}
	return &walFile{File: f, durable: fs.durable}, nil
}

type walFile struct {
	vfs.File
	durable *atomic.Int64
}

func (f *walFile) Sync() error {
	if f.durable.Load() > 0 {
		return f.File.Sync()
	}
	return nil
}

func (f *walFile) SyncData() error {
	if f.durable.Load() > 0 {
		return f.File.SyncData()
	}
	return nil
}

func (f *walFile) SyncTo(length int64) (bool, error) {
	if f.durable.Load() > 0 {
		return f.File.SyncTo(length)
	}
	return false, nil
}

func (f *walFile) Close() error {
	if err := f.File.Sync(); err != nil {
		f.File.Close()
		return err
	}
	return f.File.Close()
}

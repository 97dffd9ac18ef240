package engine

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The volumes' write locks across processes. A write transaction, a pull
// and a reset hold their volume's writer (Volume.writer) in their own
// process, and, where processes share the directory, a byte of the file
// cambium.writers, locked with an open file description lock (F_OFD_SETLK)
// at an offset taken from the volume's name: a process that joined the
// owner takes its volume's write lock there, with no round trip, and
// tells the owner only when it commits. The kernel releases the byte of a
// process that dies. Two names whose offsets meet (one in 2^62) merely
// take turns.

const writersName = "cambium.writers"

// writeLocks is a process's open file description of cambium.writers.
type writeLocks struct{ f *os.File }

func openWriteLocks(dir string) (*writeLocks, error) {
	f, err := os.OpenFile(filepath.Join(dir, writersName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the write locks: %w", err)
	}
	return &writeLocks{f: f}, nil
}

func writeLockOffset(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int64(h.Sum64() >> 2)
}

// lock takes volume name's write lock, and reports false if another
// process holds it.
func (w *writeLocks) lock(name string) (bool, error) {
	if w == nil {
		return true, nil
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: writeLockOffset(name), Len: 1}
	err := unix.FcntlFlock(w.f.Fd(), unix.F_OFD_SETLK, &lk)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lock volume %q for writing: %w", name, err)
	}
	return true, nil
}

func (w *writeLocks) unlock(name string) {
	if w == nil {
		return
	}
	lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: writeLockOffset(name), Len: 1}
	unix.FcntlFlock(w.f.Fd(), unix.F_OFD_SETLK, &lk)
}

// heldElsewhere reports whether another process holds volume name's
// write lock.
func (w *writeLocks) heldElsewhere(name string) bool {
	if w == nil {
		return false
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: writeLockOffset(name), Len: 1}
	if err := unix.FcntlFlock(w.f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false
	}
	return lk.Type != unix.F_UNLCK
}

func (w *writeLocks) close() {
	if w != nil {
		w.f.Close()
	}
}

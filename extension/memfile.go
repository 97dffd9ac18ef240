package extension

import (
	"fmt"
	"io"
)

// MemFile is a file held in memory, for everything SQLite opens besides the
// main database (rollback journals, temporary databases, statement
// journals): the engine carries durability, so these never need a disk.
// Like a File, one connection uses it one call at a time.
type MemFile struct {
	data []byte
	lock LockLevel
}

func (m *MemFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at negative offset %d", off)
	}
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *MemFile) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("write at negative offset %d", off)
	}
	if end := off + int64(len(p)); end > int64(len(m.data)) {
		if end > int64(cap(m.data)) {
			grown := make([]byte, end, max(end, 2*int64(cap(m.data))))
			copy(grown, m.data)
			m.data = grown
		}
		m.data = m.data[:end]
	}
	return copy(m.data[off:], p), nil
}

func (m *MemFile) Truncate(size int64) error {
	if size < 0 {
		return fmt.Errorf("truncate to negative size %d", size)
	}
	if size < int64(len(m.data)) {
		clear(m.data[size:])
		m.data = m.data[:size]
		return nil
	}
	_, err := m.WriteAt(nil, size)
	if size > int64(len(m.data)) {
		m.data = append(m.data, make([]byte, size-int64(len(m.data)))...)
	}
	return err
}

func (m *MemFile) Size() (int64, error)     { return int64(len(m.data)), nil }
func (m *MemFile) Close() error             { m.data = nil; return nil }
func (m *MemFile) Lock(l LockLevel) error   { m.lock = max(m.lock, l); return nil }
func (m *MemFile) Unlock(l LockLevel) error { m.lock = min(m.lock, l); return nil }

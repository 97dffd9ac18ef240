package engine

import (
	"fmt"
	"time"
)

// CommitInfo describes one commit of a volume's local log.
type CommitInfo struct {
	// Version is the version the commit made, Parent the one before it. A
	// local commit makes one version (Parent+1); a pulled one covers every
	// version a push rolled into one, (Parent, Version].
	Version, Parent Version
	// Time is when the commit was made; for a pulled commit, when the
	// writer made its newest version.
	Time time.Time
	// PageCount and PageSize are the volume's after the commit.
	PageCount uint32
	PageSize  int
	// PagesChanged is the number of pages the commit wrote.
	PagesChanged int
}

// Log returns the commits the volume stores locally, oldest first: every
// commit from the first to the newest version (the pruner deletes page
// images, never commit records; Reset deletes the commits it discards).
// Each record's checksum is verified; a damaged or missing one is
// ErrCorrupt. Log waits for a push, pull or reset in progress.
func (v *Volume) Log() ([]CommitInfo, error) {
	// Reset deletes commit records: hold it off while the log is read.
	v.pushMu.Lock()
	defer v.pushMu.Unlock()
	id := VolumeID(v.id.Load())
	if id == 0 {
		return nil, nil
	}
	var out []CommitInfo
	err := v.e.forCommits(id, 1, v.head.Load().version, func(ver Version, c commitRecord, _ uint32) error {
		out = append(out, CommitInfo{
			Version:      ver,
			Parent:       c.parent,
			Time:         c.time,
			PageCount:    c.pageCount,
			PageSize:     int(c.pageSize),
			PagesChanged: int(c.changeset.GetCardinality()),
		})
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("log of %q: %w", v.name, err)
	}
	return out, nil
}

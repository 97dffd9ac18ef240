package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
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
// commit from the oldest kept to the newest version (the pruner deletes
// the records of commits older than the retention window, see
// SetRetain; Reset deletes the commits it discards).
// Each record's checksum is verified; a damaged or missing one is
// ErrCorrupt. Log waits for a push, pull or reset in progress.
func (v *Volume) Log() ([]CommitInfo, error) {
	if v.cv != nil {
		return clientCall(v, "log", nil, nil, (*Volume).Log)
	}
	// Reset deletes commit records: hold it off while the log is read.
	v.pushMu.Lock()
	defer v.pushMu.Unlock()
	id := VolumeID(v.id.Load())
	if id == 0 {
		return nil, nil
	}
	from, err := v.e.historyStart(id)
	if err != nil {
		return nil, fmt.Errorf("log of %q: %w", v.name, err)
	}
	var out []CommitInfo
	err = v.e.forCommits(id, from, v.head.Load().version, func(ver Version, c commitRecord, _ uint32) error {
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

// RemoteLog returns the versions the remote keeps, oldest first: those a
// restore can still open (SnapshotAt, VersionAt), each with its commit
// time. The oldest is a checkpoint's when the garbage collector has
// deleted older commits; Parent is then 0 for it, and PagesChanged its
// page count. It costs one LIST of the commits and one GET per commit
// (made concurrently), plus one LIST and GET for the oldest checkpoint.
func (v *Volume) RemoteLog(ctx context.Context) ([]CommitInfo, error) {
	if v.cv != nil {
		return clientCall(v, "remote_log", nil, nil, func(lv *Volume) ([]CommitInfo, error) { return lv.RemoteLog(ctx) })
	}
	r, err := v.replica()
	if err != nil {
		return nil, fmt.Errorf("remote log of %q: %w", v.name, err)
	}
	op := r.op()
	parents, err := v.listCommits(ctx, op, 0)
	var gap *historyGap
	if errors.As(err, &gap) {
		parents, err = gap.parents, nil
	}
	if err != nil {
		return nil, fmt.Errorf("remote log of %q: %w", v.name, err)
	}
	maps := make([]*manifest.Map, len(parents))
	err = forEach(ctx, len(parents), gcConcurrency, func(ctx context.Context, i int) error {
		var err error
		maps[i], err = v.readCommit(ctx, op, parents[i])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("remote log of %q: %w", v.name, err)
	}
	var out []CommitInfo
	for i, m := range maps {
		c := CommitInfo{Version: Version(m.Version), Parent: Version(m.Parent), Time: m.Time, PageCount: m.PageCount, PageSize: int(m.PageSize), PagesChanged: int(m.Changeset.GetCardinality())}
		if i == 0 && gap != nil {
			// Only the commit's end is restorable, from its checkpoint.
			c.Parent, c.PagesChanged = 0, int(m.PageCount)
		}
		out = append(out, c)
	}
	return out, nil
}

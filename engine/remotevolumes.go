package engine

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/cambiumdb/cambium/engine/internal/manifest"
	"github.com/cambiumdb/cambium/remote"
)

// RemoteVolume describes a volume as an object store holds it.
type RemoteVolume struct {
	Name string
	// Version is the newest remote version, 0 when the volume has no
	// commits (only segments of a push that never claimed its version).
	Version Version
	// PageCount and PageSize are the volume's at Version.
	PageCount uint32
	PageSize  int
	// Time is when the writer made Version.
	Time time.Time
	// Commits counts the remote commits (pushes).
	Commits int
	// Objects and Bytes count every object under the volume's prefix:
	// commits, rollups and segments.
	Objects int
	Bytes   int64
	// Err is set when the newest commit cannot be read or fails its
	// checks (ErrRemoteCorrupt); Version and the page figures are then 0.
	Err error
}

// ListRemoteVolumes returns the volumes store holds, by name: one listing
// of every object under "v/" (paged), then one GET of each volume's newest
// commit, a few at a time. Keys under "v/" that do not name a volume the
// way this engine writes them are left out. It is for tools: its cost grows
// with the number of objects, not of volumes.
func ListRemoteVolumes(ctx context.Context, store remote.Store) ([]RemoteVolume, error) {
	return statRemote(ctx, store, manifest.VolumesPrefix)
}

// StatRemoteVolume describes one volume of store: one listing of its
// objects and one GET of its newest commit. A volume the store does not
// hold has Objects == 0.
func StatRemoteVolume(ctx context.Context, store remote.Store, name string) (RemoteVolume, error) {
	if err := ValidateName(name); err != nil {
		return RemoteVolume{}, err
	}
	vols, err := statRemote(ctx, store, manifest.VolumePrefix(name))
	if err != nil || len(vols) == 0 {
		return RemoteVolume{Name: name}, err
	}
	return vols[0], nil
}

func statRemote(ctx context.Context, store remote.Store, prefix string) ([]RemoteVolume, error) {
	objs, err := remote.ListAll(ctx, store, prefix)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	byName := map[string]*RemoteVolume{}
	lastCommit := map[string]string{}
	for _, o := range objs {
		name, _, ok := manifest.ParseVolumeKey(o.Key)
		if !ok || ValidateName(name) != nil {
			continue
		}
		rv := byName[name]
		if rv == nil {
			rv = &RemoteVolume{Name: name}
			byName[name] = rv
		}
		rv.Objects++
		rv.Bytes += o.Size
		if _, _, ok := manifest.ParseCommitKey(o.Key); ok {
			rv.Commits++
			// Commit keys end in the parent version in fixed-width hex, so
			// the listing's last one is the newest.
			lastCommit[name] = o.Key
		}
	}
	out := make([]RemoteVolume, 0, len(byName))
	for _, rv := range byName {
		out = append(out, *rv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })

	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	sem := make(chan struct{}, 8)
	for i := range out {
		key, ok := lastCommit[out[i].Name]
		if !ok {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			raw, err := store.Get(ctx, key)
			if err != nil {
				errMu.Lock()
				if first == nil {
					first = fmt.Errorf("read %s: %w", key, err)
				}
				errMu.Unlock()
				return
			}
			m, err := decodeRemoteMap(key, raw)
			if err != nil {
				out[i].Err = err
				return
			}
			out[i].Version, out[i].PageCount, out[i].PageSize, out[i].Time = Version(m.Version), m.PageCount, int(m.PageSize), m.Time
		}()
	}
	wg.Wait()
	return out, first
}

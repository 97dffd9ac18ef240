package engine

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestVolume_VersionAt: the newest version committed at or before a time,
// found in the local log, in the remote's (a cold replica), and in both
// (a replica whose one pull rolled every version into one commit).
func TestVolume_VersionAt(t *testing.T) {
	ctx := context.Background()
	rem := newFileRemote(t)
	we := openTestEngine(t, t.TempDir(), Options{})
	defer we.Close()
	w := attach(t, we, "doc", rem.url, rem.store)
	const versions = 6
	for i := range versions {
		commitPages(t, w, byte(i), 1)
		mustPush(t, w)
	}
	log, err := w.Log()
	if err != nil || len(log) != versions {
		t.Fatalf("log: %d commits, %v", len(log), err)
	}
	// want is the newest version committed at or before at.
	want := func(at time.Time) Version {
		var n Version
		for _, c := range log {
			if !c.Time.After(at) {
				n = c.Version
			}
		}
		return n
	}
	var times []time.Time
	for _, c := range log {
		times = append(times, c.Time, c.Time.Add(time.Nanosecond), c.Time.Add(-time.Nanosecond))
	}
	times = append(times, log[versions-1].Time.Add(time.Hour))

	cold := openTestEngine(t, t.TempDir(), Options{})
	defer cold.Close()
	c := attach(t, cold, "doc", rem.url, rem.store)

	pulled := openTestEngine(t, t.TempDir(), Options{})
	defer pulled.Close()
	p := attach(t, pulled, "doc", rem.url, rem.store)
	mustPull(t, p)
	if pl, _ := p.Log(); len(pl) != 1 {
		t.Fatalf("the replica's log has %d commits, want the pull's one", len(pl))
	}

	for _, tc := range []struct {
		name string
		v    *Volume
	}{{"Local", w}, {"Remote", c}, {"Pulled", p}} {
		t.Run(tc.name, func(t *testing.T) {
			for _, at := range times {
				n := want(at)
				got, gotTime, err := tc.v.VersionAt(ctx, at)
				if n == 0 {
					if !errors.Is(err, ErrVersion) {
						t.Fatalf("at %s, before the first version: %d, %v; want ErrVersion", at, got, err)
					}
					continue
				}
				if err != nil || got != n || gotTime.After(at) {
					t.Fatalf("at %s: version %d (committed %s), %v; want %d", at, got, gotTime, err, n)
				}
			}
		})
	}
	// The remote costs one LIST and a binary search of GETs.
	before := c.RemoteStats()
	if _, _, err := c.VersionAt(ctx, log[2].Time); err != nil {
		t.Fatal(err)
	}
	if n := c.RemoteStats().Sub(before).Requests(); n > 1+4 {
		t.Fatalf("VersionAt over %d remote commits made %d requests", versions, n)
	}
}

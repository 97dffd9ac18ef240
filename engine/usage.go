package engine

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/klauspost/compress/s2"
)

// StoreUsage describes where the disk of a data directory's Pebble store
// goes: what StoreUsageOf measured.
type StoreUsage struct {
	// Files is the bytes of the store's files on disk (its tables, and its
	// manifest and options), Tables those of the tables the store uses
	// (the rest is tables awaiting deletion and the small files).
	Files, Tables int64
	// Kinds splits the keys by what they hold: Keys and Bytes count the
	// keys and their bytes (key and value) before compression; Disk is
	// Pebble's estimate of the table bytes of the kind's key range. Page
	// images, stubs and zeros share one range: the stubs' and zeros' Disk
	// is an estimate, their keys and values compressed with Snappy in
	// blocks of 4 KiB as Pebble's tables are, and the images get the rest.
	Kinds []KindUsage
}

// KindUsage is one line of StoreUsage.
type KindUsage struct {
	Kind        string `json:"kind"`
	Keys        int64  `json:"keys"`
	Bytes       int64  `json:"bytes"`
	Disk        int64  `json:"disk_bytes"`
	Description string `json:"-"`
}

// String formats u on one line, the kinds largest on disk first.
func (u StoreUsage) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "files %d B, live tables %d B:", u.Files, u.Tables)
	for _, k := range u.Kinds {
		if k.Keys > 0 {
			fmt.Fprintf(&b, " %s %d keys %d B (%d B on disk);", k.Kind, k.Keys, k.Bytes, k.Disk)
		}
	}
	return strings.TrimSuffix(b.String(), ";")
}

// StoreUsageOf measures the Pebble store of data directory dir, which no
// process may hold open: it takes the directory's lock and opens the store
// read-only.
func StoreUsageOf(dir string) (StoreUsage, error) {
	var u StoreUsage
	if ok, err := IsDataDir(dir); err != nil {
		return u, err
	} else if !ok {
		return u, fmt.Errorf("%s is not a Cambium data directory", dir)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return u, err
	}
	defer lock.Close()
	path := filepath.Join(dir, "pebble")
	err = filepath.WalkDir(path, func(_ string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			u.Files += info.Size()
		}
		return err
	})
	if err != nil {
		return u, err
	}
	db, err := pebble.Open(path, &pebble.Options{ReadOnly: true, DisableWAL: true, Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		return u, fmt.Errorf("open pebble in %s: %w", dir, err)
	}
	defer db.Close()
	m := db.Metrics()
	u.Tables = m.Total().TablesSize
	names := map[byte]string{
		tagNextVolumeID: "next-volume-id", tagVolume: "volume records", tagHead: "head records",
		tagCommit: "commit records", tagSpill: "spill records", tagPruned: "pruned records",
		tagRepl: "replication records", tagCommitLog: "commit log position", tagLocation: "location records",
	}
	it, err := db.NewIter(nil)
	if err != nil {
		return u, err
	}
	defer it.Close()
	kinds := map[string]*KindUsage{}
	order := []string{}
	note := func(kind string, k, v []byte) *KindUsage {
		ku := kinds[kind]
		if ku == nil {
			ku = &KindUsage{Kind: kind}
			kinds[kind] = ku
			order = append(order, kind)
		}
		ku.Keys++
		ku.Bytes += int64(len(k) + len(v))
		return ku
	}
	// small collects the keys and values of stubs and zeros in blocks,
	// for their compressed size.
	var small []byte
	var smallDisk int64
	flush := func() {
		smallDisk += int64(len(s2.EncodeSnappy(nil, small)))
		small = small[:0]
	}
	var pageBytes int64
	for valid := it.First(); valid; valid = it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) == 0 {
			continue
		}
		if k[0] != tagPage {
			name, ok := names[k[0]]
			if !ok {
				name = fmt.Sprintf("tag 0x%02x", k[0])
			}
			note(name, k, v)
			continue
		}
		pageBytes += int64(len(k) + len(v))
		switch {
		case len(v) == 0:
			note("empty page values", k, v)
		case pageKind(v[0]) == pageImage:
			note("page images", k, v)
		case pageKind(v[0]) == pageStub:
			note("stubs", k, v)
			small = append(append(small, k...), v...)
		case pageKind(v[0]) == pageZero:
			note("zero pages", k, v)
			small = append(append(small, k...), v...)
		default:
			note("bad page values", k, v)
		}
		if len(small) >= 4096 {
			flush()
		}
	}
	flush()
	if err := it.Error(); err != nil {
		return u, err
	}
	for _, name := range order {
		ku := kinds[name]
		if t, ok := tagOf(names, name); ok {
			d, err := db.EstimateDiskUsage([]byte{t}, []byte{t + 1})
			if err != nil {
				return u, err
			}
			ku.Disk = int64(d)
		}
		u.Kinds = append(u.Kinds, *ku)
	}
	if pageBytes > 0 {
		d, err := db.EstimateDiskUsage([]byte{tagPage}, []byte{tagPage + 1})
		if err != nil {
			return u, err
		}
		var smallBytes int64
		for _, ku := range u.Kinds {
			if ku.Kind == "stubs" || ku.Kind == "zero pages" {
				smallBytes += ku.Bytes
			}
		}
		for i := range u.Kinds {
			switch u.Kinds[i].Kind {
			case "stubs", "zero pages":
				u.Kinds[i].Disk = int64(float64(smallDisk) * float64(u.Kinds[i].Bytes) / float64(smallBytes))
			case "page images":
				u.Kinds[i].Disk = max(int64(d)-smallDisk, 0)
			}
		}
	}
	return u, nil
}

func tagOf(names map[byte]string, name string) (byte, bool) {
	for t, n := range names {
		if n == name {
			return t, true
		}
	}
	return 0, false
}

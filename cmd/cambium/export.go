package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver" // for --check

	"github.com/cambiumdb/cambium/engine"
)

func exportCommand(g *globals) *command {
	var (
		version string
		atTime  string
		force   bool
		check   bool
	)
	return &command{
		name:    "export",
		args:    "NAME FILE",
		summary: "write a volume, at its newest or any version, as a plain SQLite file",
		doc: `Writes the volume NAME as a plain SQLite database FILE that any SQLite opens:
its newest version, or with --version N any version the data directory still
stores or the remote has (remote versions need --remote, or a volume that
replicates with one), or with --at TIME the newest version committed at or
before TIME (RFC 3339, e.g. 2026-12-04T18:00:00Z): a restore by time. Pages
stored only in the remote are fetched.

The file is written to a temporary file beside FILE and renamed into place
when complete, so FILE is never seen half written. --check runs
PRAGMA integrity_check on the result before the rename.`,
		minArgs: 2, maxArgs: 2,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&version, "version", "", "export version `N` rather than the newest")
			fs.StringVar(&atTime, "at", "", "export the newest version committed at or before `TIME` (RFC 3339)")
			fs.BoolVar(&force, "force", false, "overwrite FILE if it exists")
			fs.BoolVar(&check, "check", false, "verify the result with PRAGMA integrity_check")
		},
		run: func(ctx context.Context, args []string) error {
			var at *engine.Version
			if version != "" {
				n, err := engine.ParseVersion(version)
				if err != nil {
					return usagef("--version: %v", err)
				}
				at = &n
			}
			var when time.Time
			if atTime != "" {
				t, err := time.Parse(time.RFC3339Nano, atTime)
				switch {
				case err != nil:
					return usagef("--at %q: want a time in RFC 3339, such as 2026-12-04T18:00:00Z", atTime)
				case at != nil:
					return usagef("--version and --at both choose the version to export; pass one")
				}
				when = t
			}
			return runExport(ctx, g, args[0], args[1], at, when, force, check)
		},
	}
}

type exportResult struct {
	Volume    string `json:"volume"`
	File      string `json:"file"`
	Version   uint64 `json:"version"`
	Pages     uint32 `json:"pages"`
	PageSize  int    `json:"page_size"`
	Bytes     int64  `json:"bytes"`
	Integrity string `json:"integrity_check,omitempty"`
}

func runExport(ctx context.Context, g *globals, name, file string, at *engine.Version, when time.Time, force, check bool) error {
	if err := engine.ValidateName(name); err != nil {
		return err
	}
	path, err := absPath(file)
	if err != nil {
		return err
	}
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return fmt.Errorf("%s is a directory", file)
		}
		if !force {
			return fmt.Errorf("%s exists; pass --force to overwrite it", file)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	s, err := g.open(name, reading)
	if err != nil {
		return err
	}
	defer s.Close()
	snap, err := snapshotFor(ctx, s, at, when)
	if err != nil {
		return err
	}
	defer snap.Release()
	if snap.PageCount() == 0 {
		return fmt.Errorf("version %d of %q has no pages", snap.Version(), name)
	}

	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".cambium-*")
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := writePages(ctx, g, snap, tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	res := exportResult{Volume: name, File: path, Version: uint64(snap.Version()), Pages: snap.PageCount(),
		PageSize: snap.PageSize(), Bytes: int64(snap.PageCount()) * int64(snap.PageSize())}
	if check {
		if res.Integrity, err = integrityCheck(ctx, tmp.Name()); err != nil {
			return fmt.Errorf("integrity_check of the exported file: %w", err)
		}
		if res.Integrity != "ok" {
			return fmt.Errorf("version %d of %q fails PRAGMA integrity_check; %s not written:\n%s", res.Version, name, file, res.Integrity)
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	committed = true
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return g.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "exported %s version %d to %s: %s of %s bytes (%s)", name, res.Version, file,
			plural(res.Pages, "page", "pages"), count(res.PageSize), size(res.Bytes))
		if check {
			fmt.Fprintf(w, ", integrity_check ok")
		}
		fmt.Fprintln(w)
	})
}

// snapshotFor pins the version of s's volume to read: at, or the newest
// committed at or before when, or the newest local one, or, for a volume
// the data directory does not have, the remote's newest. It attaches the
// volume when it has a remote.
func snapshotFor(ctx context.Context, s *session, at *engine.Version, when time.Time) (*engine.Snapshot, error) {
	local := exists(s.v)
	if s.g.remoteFor(s.v) != "" {
		if err := s.attach(ctx, nil); err != nil {
			return nil, err
		}
	}
	switch {
	case at != nil:
		return s.v.SnapshotAt(ctx, *at)
	case !when.IsZero():
		n, _, err := s.v.VersionAt(ctx, when)
		if err != nil {
			return nil, err
		}
		return s.v.SnapshotAt(ctx, n)
	case local:
		return s.v.Snapshot(), nil
	case s.url == "":
		return nil, fmt.Errorf("no volume %q in %s (pass --remote to read one from an object store)", s.v.Name(), s.g.dir)
	}
	f, err := s.v.Poll(ctx)
	if err != nil {
		return nil, err
	}
	if f.RemoteVersion == 0 {
		return nil, fmt.Errorf("no volume %q in %s or in %s", s.v.Name(), s.g.dir, s.url)
	}
	return s.v.SnapshotAt(ctx, f.RemoteVersion)
}

// writePages writes every page of snap to f, reading them a few at a time
// (pages in the remote are fetched concurrently).
func writePages(ctx context.Context, g *globals, snap *engine.Snapshot, f *os.File) error {
	n, ps := snap.PageCount(), int64(snap.PageSize())
	if err := f.Truncate(int64(n) * ps); err != nil {
		return err
	}
	const chunk = 64
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan uint32)
	bar := g.bar(int64(n), "export", false)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
			cancel()
		}
		mu.Unlock()
	}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for start := range jobs {
				for p := start; p < start+chunk && p <= n; p++ {
					var err error
					if buf, err = readPage(snap, engine.PageNo(p), buf[:0]); err != nil {
						fail(err)
						return
					}
					if _, err := f.WriteAt(buf, int64(p-1)*ps); err != nil {
						fail(err)
						return
					}
				}
				bar.Add(int(min(chunk, n-start+1)))
			}
		}()
	}
feed:
	for start := uint32(1); start <= n; start += chunk {
		select {
		case jobs <- start:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	bar.Finish()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// readPage reads one page, turning a panic of the store (Pebble treats
// on-disk corruption as fatal) into an error.
func readPage(snap *engine.Snapshot, p engine.PageNo, dst []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, _, _ := strings.Cut(fmt.Sprint(r), "\n")
			err = fmt.Errorf("read page %d of %q: %w: %s", p, snap.Volume().Name(), engine.ErrCorrupt, msg)
		}
	}()
	return snap.ReadPage(p, dst)
}

// integrityCheck runs PRAGMA integrity_check on the plain database file at
// path, read-only, and returns its result ("ok" when sound).
func integrityCheck(ctx context.Context, path string) (string, error) {
	u := url.URL{Scheme: "file", Path: path, RawQuery: "mode=ro"}
	db, err := sql.Open("sqlite3", u.String())
	if err != nil {
		return "", err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return "", err
		}
		lines = append(lines, s)
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	return strings.Join(lines, "\n"), nil
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/cambiumdb/cambium/engine"
)

func importCommand(g *globals) *command {
	var force bool
	return &command{
		name:    "import",
		args:    "FILE NAME",
		summary: "copy a plain SQLite database file into a volume",
		doc: `Copies the SQLite database FILE into the volume NAME, page by page, as one
new version committed durably. The page size is the file's.

FILE must be a SQLite database that no one is writing. A database in WAL mode
must be checkpointed first when its -wal file holds changes
(sqlite3 FILE 'PRAGMA wal_checkpoint(TRUNCATE)'); without them it is imported
in rollback-journal mode, since Cambium versions pages itself. A file with a
hot rollback journal is refused: open it with sqlite3 once to roll it back.

A volume that already has pages is refused unless --force, which replaces
its contents with FILE's as a new version (older versions stay readable, at
their page size if FILE's is another).`,
		minArgs: 2, maxArgs: 2,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&force, "force", false, "replace the contents of a volume that has pages")
		},
		run: func(ctx context.Context, args []string) error {
			return runImport(ctx, g, args[0], args[1], force)
		},
	}
}

// sqliteMagic starts every SQLite database file.
const sqliteMagic = "SQLite format 3\x00"

// journalMagic starts a rollback journal that holds a transaction.
var journalMagic = []byte{0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7}

// sqliteFile is what import learned of a database file's header.
type sqliteFile struct {
	pageSize int
	pages    int64
	wal      bool // file format versions say WAL mode
}

// inspectSQLite checks that path is a SQLite database import can copy
// consistently, and reads its page size and page count.
func inspectSQLite(path string) (sqliteFile, error) {
	var sf sqliteFile
	f, err := os.Open(path)
	if err != nil {
		return sf, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return sf, err
	}
	if !st.Mode().IsRegular() {
		return sf, fmt.Errorf("%s is not a regular file", path)
	}
	hdr := make([]byte, 100)
	if n, _ := io.ReadFull(f, hdr); n < len(hdr) || string(hdr[:16]) != sqliteMagic {
		return sf, fmt.Errorf("%s is not a SQLite database (it does not start with %q)", path, "SQLite format 3")
	}
	sf.pageSize = int(binary.BigEndian.Uint16(hdr[16:18]))
	if sf.pageSize == 1 {
		sf.pageSize = 65536
	}
	if sf.pageSize < 512 || sf.pageSize > 65536 || sf.pageSize&(sf.pageSize-1) != 0 {
		return sf, fmt.Errorf("%s: page size %d in its header is not a power of two from 512 to 65536: not a SQLite database, or a damaged one", path, sf.pageSize)
	}
	if st.Size()%int64(sf.pageSize) != 0 {
		return sf, fmt.Errorf("%s is %d bytes, not a whole number of its %d-byte pages: truncated, or not a database", path, st.Size(), sf.pageSize)
	}
	sf.pages = st.Size() / int64(sf.pageSize)
	if sf.pages > int64(^uint32(0)) {
		return sf, fmt.Errorf("%s has %d pages, more than a volume holds", path, sf.pages)
	}
	// The header's page count is valid when its change counter matches
	// the version-valid-for number (SQLite 3.7.0 and later).
	if headerPages := binary.BigEndian.Uint32(hdr[28:32]); headerPages != 0 &&
		binary.BigEndian.Uint32(hdr[24:28]) == binary.BigEndian.Uint32(hdr[92:96]) && int64(headerPages) > sf.pages {
		return sf, fmt.Errorf("%s has %d pages, but its header says %d: the file is truncated", path, sf.pages, headerPages)
	}
	sf.wal = hdr[18] == 2 || hdr[19] == 2
	if sf.wal {
		if st, err := os.Stat(path + "-wal"); err == nil && st.Size() > 0 {
			return sf, fmt.Errorf("%s is in WAL mode and %s-wal holds changes that are not in it yet; checkpoint first: sqlite3 %s 'PRAGMA wal_checkpoint(TRUNCATE)'", path, path, path)
		}
	}
	if j, err := os.Open(path + "-journal"); err == nil {
		head := make([]byte, len(journalMagic))
		_, rerr := io.ReadFull(j, head)
		j.Close()
		if rerr == nil && bytes.Equal(head, journalMagic) {
			return sf, fmt.Errorf("%s has a hot rollback journal (%s-journal): a transaction was interrupted; open the database with sqlite3 once so that SQLite rolls it back, then import it", path, path)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return sf, err
	}
	return sf, nil
}

type importResult struct {
	Volume    string `json:"volume"`
	File      string `json:"file"`
	Version   uint64 `json:"version"`
	Pages     int64  `json:"pages"`
	PageSize  int    `json:"page_size"`
	Bytes     int64  `json:"bytes"`
	Unchanged bool   `json:"unchanged"`
	FromWAL   bool   `json:"converted_from_wal"`
}

func runImport(ctx context.Context, g *globals, file, name string, force bool) error {
	if err := engine.ValidateName(name); err != nil {
		return err
	}
	path, err := absPath(file)
	if err != nil {
		return err
	}
	sf, err := inspectSQLite(path)
	if err != nil {
		return err
	}
	s, err := g.open(name, creating)
	if err != nil {
		return err
	}
	defer s.Close()
	head, have, ps := s.v.Head()
	if have > 0 && !force {
		return fmt.Errorf("volume %q already has %s (version %d); pass --force to replace its contents with %s as a new version", name, plural(have, "page", "pages"), head, file)
	}

	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	base := s.v.Snapshot()
	defer base.Release()
	txn, err := s.v.Begin(base)
	if err != nil {
		return err
	}
	defer txn.Rollback()
	// A file of another page size than the volume's is written through
	// pages of the volume's size, then cut into its own (as VACUUM does
	// after PRAGMA page_size): the version has the file's page size.
	if ps == 0 {
		ps = sf.pageSize
	}
	length := sf.pages * int64(sf.pageSize)
	n := (length + int64(ps) - 1) / int64(ps)
	bar := g.bar(n, "import", false)
	r := bufio.NewReaderSize(f, 1<<20)
	page := make([]byte, ps)
	for p := int64(1); p <= n; p++ {
		if p%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		clear(page)
		if _, err := io.ReadFull(r, page[:min(int64(ps), length-(p-1)*int64(ps))]); err != nil {
			return fmt.Errorf("read page %d of %s: %w (was it changed during the import?)", p, file, err)
		}
		if p == 1 && sf.wal {
			page[18], page[19] = 1, 1 // rollback-journal mode
		}
		if err := txn.WritePage(engine.PageNo(p), page); err != nil {
			return err
		}
		bar.Add(1)
	}
	if uint32(n) < txn.PageCount() {
		if err := txn.Truncate(uint32(n)); err != nil {
			return err
		}
	}
	if ps != sf.pageSize {
		if err := txn.SetPageSize(sf.pageSize, length); err != nil {
			return err
		}
	}
	next, err := txn.Commit(engine.Durable)
	if err != nil {
		return err
	}
	defer next.Release()
	bar.Finish()
	res := importResult{
		Volume: name, File: path, Version: uint64(next.Version()), Pages: sf.pages, PageSize: sf.pageSize,
		Bytes: sf.pages * int64(sf.pageSize), Unchanged: next.Version() == head, FromWAL: sf.wal,
	}
	return g.emit(res, func(w io.Writer) {
		if res.Unchanged {
			fmt.Fprintf(w, "%s: unchanged at version %d (it already holds %s)\n", name, res.Version, file)
			return
		}
		fmt.Fprintf(w, "imported %s into %s: %s of %s bytes (%s), version %d\n",
			file, name, plural(res.Pages, "page", "pages"), count(res.PageSize), size(res.Bytes), res.Version)
		if res.FromWAL {
			fmt.Fprintf(w, "  the file was in WAL mode; the volume is in rollback-journal mode (header bytes 18-19)\n")
		}
	})
}

package engine

import (
	"fmt"
	"testing"
)

// BenchmarkTxn_Commit measures a small write transaction (two 4 KiB pages)
// at each durability.
func BenchmarkTxn_Commit(b *testing.B) {
	for _, d := range []Durability{Buffered, Durable} {
		b.Run(fmt.Sprintf("durability=%d", d), func(b *testing.B) {
			e := openTestEngine(b, b.TempDir(), Options{})
			defer e.Close()
			v, _ := e.Volume("bench")
			page := make([]byte, 4096)
			for i := 0; b.Loop(); i++ {
				base := v.Snapshot()
				txn, err := v.Begin(base)
				if err != nil {
					b.Fatal(err)
				}
				page[0] = byte(i)
				txn.WritePage(1, page)
				txn.WritePage(PageNo(2+i%100), page)
				snap, err := txn.Commit(d)
				if err != nil {
					b.Fatal(err)
				}
				snap.Release()
				base.Release()
			}
		})
	}
}

// BenchmarkSnapshot_ReadPage measures a page read through a snapshot:
// cached, as SQLite's header check at each transaction does, and from
// Pebble (the page value decoded), as a read of a page not in the cache.
func BenchmarkSnapshot_ReadPage(b *testing.B) {
	for _, c := range []struct {
		name  string
		bytes int64
	}{{"on", 0}, {"off", -1}} {
		b.Run("cache="+c.name, func(b *testing.B) {
			e := openTestEngine(b, b.TempDir(), Options{CacheBytes: c.bytes})
			defer e.Close()
			v, _ := e.Volume("bench")
			base := v.Snapshot()
			txn, _ := v.Begin(base)
			txn.WritePage(1, make([]byte, 4096))
			snap, _ := txn.Commit(Buffered)
			base.Release()
			defer snap.Release()
			var buf []byte
			for b.Loop() {
				s := v.Snapshot()
				buf, _ = s.ReadPage(1, buf[:0])
				s.Release()
			}
		})
	}
}

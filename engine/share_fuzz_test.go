package engine

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/cambiumdb/cambium/engine/internal/wire"
)

// FuzzServe sends any bytes, after a hello, to a data directory's owner as
// a client would, and checks that the owner neither crashes nor stops
// serving: a new client still reads and writes.
func FuzzServe(f *testing.F) {
	dir := f.TempDir()
	e := openTestEngine(f, dir, Options{})
	f.Cleanup(func() { e.Close() })
	bankInit(f, e)
	frame := func(call uint32, kind byte, fields func(*wire.Encoder)) []byte {
		enc := wire.Start(nil, call, kind)
		fields(&enc)
		b, _ := enc.Finish()
		return b
	}
	pin := frame(1, wire.OpPin, func(e *wire.Encoder) { e.String("bank"); e.Uint(0) })
	read := frame(2, wire.OpRead, func(e *wire.Encoder) { e.Uint(1); e.Uint(1) })
	begin := frame(3, wire.OpBegin, func(e *wire.Encoder) { e.String("bank"); e.Uint(1) })
	stage := frame(4, wire.OpStage, func(e *wire.Encoder) { e.Uint(2); e.Uint(3); e.Uint(1); e.Uint(1); e.Bytes(make([]byte, 512)) })
	commit := frame(5, wire.OpCommit, func(e *wire.Encoder) { e.Uint(2); e.Uint(1); e.Uint(0); e.Uint(0) })
	admin := frame(6, wire.OpAdmin, func(e *wire.Encoder) { e.String("gc"); e.String("bank"); e.Bytes([]byte(`{"Retain":1}`)) })
	f.Add(append(append(pin, read...), begin...))
	f.Add(append(append(append(append(pin, begin...), stage...), commit...), admin...))
	f.Add(frame(7, wire.OpPageSize, func(e *wire.Encoder) { e.Uint(2); e.Uint(1024); e.Uint(1 << 40) }))
	f.Add(frame(8, wire.OpAdmin, func(e *wire.Encoder) { e.String("set_retain"); e.String("../x"); e.Bytes([]byte("{")) }))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := dialOwner(dir)
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.get()
		if err != nil {
			t.Fatal(err)
		}
		c.c.Write(cheapCalls(b))
		// Let the owner read and run what it was sent, then hang up: it
		// releases whatever the bytes pinned or began.
		time.Sleep(time.Millisecond)
		s.close()

		// The bytes may have committed anything (they are calls): what
		// must hold is that the owner still answers a new client.
		s2, err := dialOwner(dir)
		if err != nil {
			t.Fatalf("after the bytes: %v", err)
		}
		defer s2.close()
		body, err := s2.call(wire.OpPin, func(e *wire.Encoder) { e.String("bank"); e.Uint(0) }, nil)
		if err != nil {
			t.Fatalf("pin after the bytes: %v", err)
		}
		if _, err := decodePin(body); err != nil {
			t.Fatal(err)
		}
	})
}

// cheapCalls returns the frames of b, as far as they read as frames, but
// the admin calls that reach a remote (any URL the bytes make up) or walk
// every page of a volume (which the bytes may have made billions of pages
// long): the fuzzer looks for crashes of the owner, not for slow work.
func cheapCalls(b []byte) []byte {
	r := bufio.NewReader(bytes.NewReader(b))
	var out, buf []byte
	for {
		f, err := wire.ReadFrame(r, &buf)
		if err != nil {
			// What is left goes as it is: a frame cut short.
			rest, _ := io.ReadAll(r)
			return append(out, rest...)
		}
		if f.Kind == wire.OpAdmin {
			switch wire.NewDecoder(f.Body).String() {
			case "head", "writing", "stats", "replication", "set_retain", "set_warm", "volumes", "budget", "sync_turn", "remote_stats":
			default:
				continue
			}
		}
		e := wire.Start(nil, f.Call, f.Kind)
		frame, _ := e.Finish()
		frame = append(frame, f.Body...)
		binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
		out = append(out, frame...)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/cambiumdb/cambium/engine"
)

func verifyCommand(g *globals) *command {
	return &command{
		name:    "verify",
		args:    "NAME",
		summary: "read all of a volume's newest version and check every checksum",
		doc: `Checks the volume NAME by reading all of its newest version: the local commit
log, and every page the data directory stores, from disk (so that every block
checksum of the store is verified). With --remote (or CAMBIUM_REMOTE) it also
reads every commit and rollup object of the volume in the remote, and every
segment frame the remote's newest version reads, and checks each against its
checksum; nothing read is stored.

It prints "ok: N pages, M frames verified", or the list of problems found and
exits with status 1.`,
		minArgs: 1, maxArgs: 1,
		run: func(ctx context.Context, args []string) error { return runVerify(ctx, g, args[0]) },
	}
}

type verifyResult struct {
	Volume        string   `json:"volume"`
	OK            bool     `json:"ok"`
	Version       uint64   `json:"version"`
	Pages         int      `json:"pages"`
	LocalPages    int      `json:"local_pages"`
	ZeroPages     int      `json:"zero_pages"`
	RemotePages   int      `json:"remote_pages"`
	Commits       int      `json:"commits"`
	Remote        string   `json:"remote,omitempty"`
	RemoteVersion uint64   `json:"remote_version"`
	RemoteObjects int      `json:"remote_objects"`
	Segments      int      `json:"segments"`
	Frames        int      `json:"frames"`
	FrameBytes    int64    `json:"frame_bytes"`
	ProblemCount  int      `json:"problem_count"`
	Problems      []string `json:"problems"`
}

func runVerify(ctx context.Context, g *globals, name string) error {
	// The engine logs on-disk corruption as Pebble reports it; verify
	// lists it among its problems instead.
	g.logger = slog.New(dropCorruption{g.logger.Handler()})
	s, err := g.open(name, reading)
	if err != nil {
		return err
	}
	defer s.Close()
	local := exists(s.v)
	if g.remote != "" {
		if err := s.attach(ctx, nil); err != nil {
			return err
		}
	} else if !local {
		return fmt.Errorf("no volume %q in %s", name, g.dir)
	}
	bars := &stageBars{g: g, prefix: "verify", units: map[string]string{"frames": "frames"}}
	r, err := s.v.Verify(ctx, engine.VerifyOptions{
		Remote:      g.remote != "",
		MaxProblems: 1000,
		Progress:    bars.set,
	})
	bars.Finish()
	if err != nil {
		return err
	}
	if !local && r.RemoteVersion == 0 && r.OK() {
		return fmt.Errorf("no volume %q in %s or in %s", name, g.dir, g.remote)
	}
	res := verifyResult{Volume: name, OK: r.OK(), Version: uint64(r.Version), Pages: r.Pages, LocalPages: r.LocalPages,
		ZeroPages: r.ZeroPages, RemotePages: r.RemotePages, Commits: r.Commits, Remote: g.remote,
		RemoteVersion: uint64(r.RemoteVersion), RemoteObjects: r.RemoteObjects, Segments: r.Segments,
		Frames: r.Frames, FrameBytes: r.FrameBytes, ProblemCount: r.ProblemCount, Problems: r.Problems}
	if res.Problems == nil {
		res.Problems = []string{}
	}
	pages := r.LocalPages + r.ZeroPages
	err = g.emit(res, func(w io.Writer) {
		if r.OK() {
			fmt.Fprintf(w, "ok: %s pages, %s frames verified\n", count(pages), count(r.Frames))
		} else {
			fmt.Fprintf(w, "FAILED: %s found\n", plural(r.ProblemCount, "problem", "problems"))
			for _, p := range r.Problems {
				fmt.Fprintf(w, "  - %s\n", strings.ReplaceAll(p, "\n", "\n    "))
			}
			if n := r.ProblemCount - len(r.Problems); n > 0 {
				fmt.Fprintf(w, "  ... and %s more\n", count(n))
			}
		}
		if local {
			fmt.Fprintf(w, "  local: version %d, %s: %s read from disk, %s all zeros, %s in the remote only; %s\n",
				r.Version, plural(r.Pages, "page", "pages"), count(r.LocalPages), count(r.ZeroPages), count(r.RemotePages),
				plural(r.Commits, "commit record", "commit records"))
			if r.RemotePages > 0 && g.remote == "" {
				fmt.Fprintf(w, "  (pages in the remote only are checked with --remote)\n")
			}
		}
		if g.remote != "" {
			fmt.Fprintf(w, "  remote %s: version %d, %s, %s, %s (%s)\n", g.remote, r.RemoteVersion,
				plural(r.RemoteObjects, "commit and rollup object", "commit and rollup objects"), plural(r.Segments, "segment", "segments"),
				plural(r.Frames, "frame", "frames"), size(r.FrameBytes))
		}
	})
	if err != nil {
		return err
	}
	if !r.OK() {
		if g.json {
			return errReported
		}
		return fmt.Errorf("%s: %s (listed above)", name, plural(r.ProblemCount, "problem", "problems"))
	}
	return nil
}

// dropCorruption drops the engine's log records of on-disk corruption,
// which verify reports itself.
type dropCorruption struct{ slog.Handler }

func (d dropCorruption) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "on-disk corruption") {
		return nil
	}
	return d.Handler.Handle(ctx, r)
}

func (d dropCorruption) WithAttrs(as []slog.Attr) slog.Handler {
	return dropCorruption{d.Handler.WithAttrs(as)}
}

func (d dropCorruption) WithGroup(name string) slog.Handler {
	return dropCorruption{d.Handler.WithGroup(name)}
}

package main

import (
	"context"
	"fmt"
	"io"

	"github.com/cambiumdb/cambium/engine"
	"github.com/cambiumdb/cambium/remote"
)

func hydrateCommand(g *globals) *command {
	return &command{
		name:    "hydrate",
		args:    "NAME",
		summary: "download every page of the newest version not yet local",
		doc: `Downloads every page of the volume NAME's newest version that the data
directory does not store yet, in coalesced ranged reads of up to 8 MiB, 8 at a
time, verifying each frame's checksum. Afterwards the volume reads without the
remote. The remote is --remote, CAMBIUM_REMOTE, or the one the volume
replicates with.`,
		minArgs: 1, maxArgs: 1,
		run: func(ctx context.Context, args []string) error { return runHydrate(ctx, g, args[0]) },
	}
}

type hydrateResult struct {
	Volume  string `json:"volume"`
	Remote  string `json:"remote"`
	Version uint64 `json:"version"`
	engine.HydrateResult
}

func runHydrate(ctx context.Context, g *globals, name string) error {
	bar := g.bar(-1, "hydrate", true)
	s, err := g.openAttached(ctx, name, existing, func(st remote.Store) remote.Store { return &progressStore{Store: st, bar: bar} })
	if err != nil {
		return err
	}
	defer s.Close()
	r, err := s.v.Hydrate(ctx)
	bar.Finish()
	if err != nil {
		return err
	}
	head, _, _ := s.v.Head()
	res := hydrateResult{Volume: name, Remote: s.url, Version: uint64(head), HydrateResult: r}
	return g.emit(res, func(w io.Writer) {
		if r.Pages == 0 {
			fmt.Fprintf(w, "%s: every page of version %d is already local\n", name, head)
			return
		}
		fmt.Fprintf(w, "hydrated %s version %d from %s: %s in %s, %s in %s\n", name, head, s.url,
			plural(r.Pages, "page", "pages"), plural(r.Frames, "frame", "frames"), size(r.BytesRead), plural(r.Requests, "request", "requests"))
	})
}

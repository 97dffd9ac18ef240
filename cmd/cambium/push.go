package main

import (
	"context"
	"fmt"
	"io"

	"github.com/cambiumdb/cambium/engine"
	"github.com/cambiumdb/cambium/remote"
)

func pushCommand(g *globals) *command {
	return &command{
		name:    "push",
		args:    "NAME",
		summary: "upload the volume's versions the remote does not have",
		doc: `Pushes the volume NAME: every local version the remote lacks goes up as one
remote commit (segments with the newest image of each changed page, then a
small commit record that claims its parent version). The remote is --remote
(or CAMBIUM_REMOTE), else the one the volume replicates with; a volume follows
one remote for life.

If another writer pushed first, the volume is diverged: its local versions
are kept, writes are refused, and cambium reset discards them to follow the
remote.`,
		minArgs: 1, maxArgs: 1,
		run: func(ctx context.Context, args []string) error { return runPush(ctx, g, args[0]) },
	}
}

type pushResult struct {
	Volume string `json:"volume"`
	Remote string `json:"remote"`
	engine.PushResult
}

func runPush(ctx context.Context, g *globals, name string) error {
	bar := g.bar(-1, "push", true)
	s, err := g.openAttached(ctx, name, existing, func(st remote.Store) remote.Store { return &progressStore{Store: st, bar: bar, writes: true} })
	if err != nil {
		return err
	}
	defer s.Close()
	r, err := s.v.Push(ctx)
	bar.Finish()
	if err != nil {
		return err
	}
	res := pushResult{Volume: name, Remote: s.url, PushResult: r}
	return g.emit(res, func(w io.Writer) {
		if r.To == r.From {
			fmt.Fprintf(w, "%s: nothing to push; %s has version %d\n", name, s.url, r.To)
			return
		}
		versions := fmt.Sprintf("versions %d..%d as one remote commit", r.From+1, r.To)
		if r.To == r.From+1 {
			versions = fmt.Sprintf("version %d", r.To)
		}
		fmt.Fprintf(w, "pushed %s to %s: %s, %s in %s, %s in %s\n",
			name, s.url, versions, plural(r.Pages, "page", "pages"), plural(r.Segments, "segment", "segments"),
			size(r.BytesWritten), plural(r.Requests, "request", "requests"))
	})
}

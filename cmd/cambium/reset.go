package main

import (
	"context"
	"fmt"
	"io"

	"github.com/cambiumdb/cambium/engine"
)

func resetCommand(g *globals) *command {
	return &command{
		name:    "reset",
		args:    "NAME",
		summary: "discard local versions the remote does not have, and follow the remote",
		doc: `Discards the volume NAME's local versions that are not in the remote (all
those after the newest pushed version: a diverged volume's, or unpushed ones),
clears the diverged state, and pulls, so that the volume follows the remote
again. What is discarded is gone: export it first if it matters.`,
		minArgs: 1, maxArgs: 1,
		run: func(ctx context.Context, args []string) error { return runReset(ctx, g, args[0]) },
	}
}

type resetResult struct {
	Volume string `json:"volume"`
	Remote string `json:"remote"`
	engine.ResetResult
}

func runReset(ctx context.Context, g *globals, name string) error {
	s, err := g.openAttached(ctx, name, existing, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	head, _, _ := s.v.Head()
	r, err := s.v.Reset(ctx)
	if err != nil {
		return err
	}
	res := resetResult{Volume: name, Remote: s.url, ResetResult: r}
	return g.emit(res, func(w io.Writer) {
		if r.Discarded > 0 {
			fmt.Fprintf(w, "reset %s: discarded local versions %d..%d; ", name, head-r.Discarded+1, head)
		} else {
			fmt.Fprintf(w, "reset %s: nothing to discard; ", name)
		}
		if r.To != r.From {
			fmt.Fprintf(w, "pulled version %d -> %d from %s (%s changed)\n", r.From, r.To, s.url, plural(r.PagesChanged, "page", "pages"))
		} else {
			fmt.Fprintf(w, "at version %d, following %s\n", r.To, s.url)
		}
	})
}

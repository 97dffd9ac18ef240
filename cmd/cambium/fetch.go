package main

import (
	"context"
	"fmt"
	"io"

	"github.com/cambiumdb/cambium/engine"
)

func fetchCommand(g *globals) *command {
	return &command{
		name:    "fetch",
		args:    "NAME",
		summary: "learn the remote's newest version without applying it",
		doc: `Asks the remote (--remote, CAMBIUM_REMOTE, or the one the volume replicates
with) for the newest version of the volume NAME: one LIST, and one GET when
there are new commits. Nothing is applied; a volume that is behind says so in
cambium info and cambium ls until cambium pull.`,
		minArgs: 1, maxArgs: 1,
		run: func(ctx context.Context, args []string) error { return runFetch(ctx, g, args[0]) },
	}
}

type fetchResult struct {
	Volume string `json:"volume"`
	Remote string `json:"remote"`
	engine.PollResult
}

func runFetch(ctx context.Context, g *globals, name string) error {
	s, err := g.openAttached(ctx, name, reading, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	r, err := s.v.Poll(ctx)
	if err != nil {
		return err
	}
	if !exists(s.v) && r.RemoteVersion == 0 {
		return fmt.Errorf("no volume %q in %s or in %s", name, g.dir, s.url)
	}
	res := fetchResult{Volume: name, Remote: s.url, PollResult: r}
	return g.emit(res, func(w io.Writer) {
		switch {
		case !exists(s.v):
			fmt.Fprintf(w, "%s: not in %s; %s has version %d (cambium pull creates it)\n", name, g.dir, s.url, r.RemoteVersion)
		case r.RemoteVersion > r.Version:
			fmt.Fprintf(w, "%s: local version %d, %s has version %d (%s); cambium pull applies them\n",
				name, r.Version, s.url, r.RemoteVersion, plural(r.Commits, "new commit", "new commits"))
		default:
			fmt.Fprintf(w, "%s: local version %d; %s has nothing newer (version %d)\n", name, r.Version, s.url, r.RemoteVersion)
		}
	})
}

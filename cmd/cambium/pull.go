package main

import (
	"context"
	"fmt"
	"io"

	"github.com/cambiumdb/cambium/engine"
)

func pullCommand(g *globals) *command {
	return &command{
		name:    "pull",
		args:    "NAME",
		summary: "fast-forward the volume to the remote's newest version (metadata only)",
		doc: `Pulls the volume NAME from the remote (--remote, CAMBIUM_REMOTE, or the one it
replicates with): one LIST of the commits after the local version, then the
rollups that cover them. It moves no page data: each changed page learns where
its image lives, and is fetched when read (cambium hydrate fetches them all).
A volume the data directory does not have yet is created at the remote's
newest version. A volume with unpushed versions cannot pull; push or reset it.`,
		minArgs: 1, maxArgs: 1,
		run: func(ctx context.Context, args []string) error { return runPull(ctx, g, args[0]) },
	}
}

type pullResult struct {
	Volume string `json:"volume"`
	Remote string `json:"remote"`
	engine.PullResult
}

func runPull(ctx context.Context, g *globals, name string) error {
	s, err := g.openAttached(ctx, name, creating, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	r, err := s.v.Pull(ctx)
	if err != nil {
		return err
	}
	if !exists(s.v) {
		return fmt.Errorf("no volume %q in %s", name, s.url)
	}
	res := pullResult{Volume: name, Remote: s.url, PullResult: r}
	return g.emit(res, func(w io.Writer) {
		if r.To == r.From {
			fmt.Fprintf(w, "%s is up to date at version %d\n", name, r.To)
			return
		}
		fmt.Fprintf(w, "pulled %s from %s: version %d -> %d (%s), %s changed; %s of metadata in %s\n",
			name, s.url, r.From, r.To, plural(r.Commits, "remote commit", "remote commits"), plural(r.PagesChanged, "page", "pages"),
			size(r.BytesRead), plural(r.Requests, "request", "requests"))
	})
}

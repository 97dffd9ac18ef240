package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/cambiumdb/cambium/engine"
	"github.com/cambiumdb/cambium/extension"
)

func pullCommand(g *globals) *command {
	var warm string
	return &command{
		name:    "pull",
		args:    "NAME",
		summary: "fast-forward the volume to the remote's newest version (metadata only)",
		doc: `Pulls the volume NAME from the remote (--remote, CAMBIUM_REMOTE, or the one it
replicates with): one LIST of the commits after the local version, then the
rollups that cover them. It moves no page data: each changed page learns where
its image lives, and is fetched when read (cambium hydrate fetches them all).
A volume the data directory does not have yet is created at the remote's
newest version. A volume with unpushed versions cannot pull; push or reset it.

With --warm on (else CAMBIUM_WARM, else on), the pages the data directory had
stored and the pull changed are fetched again, in coalesced ranged reads, so
that they stay local; pull waits for those fetches and reports how many pages
they brought. --warm off leaves them to be fetched when read.`,
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&warm, "warm", "", "`on` or off: fetch again the changed pages the data directory had stored (CAMBIUM_WARM; default on)")
		},
		run: func(ctx context.Context, args []string) error {
			on, set, err := setting("warm", warm, "CAMBIUM_WARM", extension.ParseWarm)
			if err != nil {
				return err
			}
			return runPull(ctx, g, args[0], on || !set)
		},
	}
}

type pullResult struct {
	Volume string `json:"volume"`
	Remote string `json:"remote"`
	engine.PullResult
	// Warm says the pull rewarmed: it fetched again the changed pages the
	// data directory had stored; RewarmedPages is how many pages that
	// stored (those of every frame it read).
	Warm          bool  `json:"warm"`
	RewarmedPages int64 `json:"rewarmed_pages"`
}

func runPull(ctx context.Context, g *globals, name string, warm bool) error {
	s, err := g.openAttached(ctx, name, creating, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	s.v.SetWarm(warm)
	// A pull fetches no pages: those fetched from here to the end of the
	// wait are the rewarm's.
	fetched := s.v.Stats().PagesFetched
	r, err := s.v.Pull(ctx)
	if err != nil {
		return err
	}
	if !exists(s.v) {
		return fmt.Errorf("no volume %q in %s", name, s.url)
	}
	res := pullResult{Volume: name, Remote: s.url, PullResult: r, Warm: warm}
	if warm {
		// Closing the engine would cut the rewarm short.
		if err := s.v.Warmed(ctx); err != nil {
			return fmt.Errorf("pulled %s to version %d, but the rewarm was cut short: %w", name, r.To, err)
		}
		res.RewarmedPages = s.v.Stats().PagesFetched - fetched
	}
	return g.emit(res, func(w io.Writer) {
		if r.To == r.From {
			fmt.Fprintf(w, "%s is up to date at version %d\n", name, r.To)
			return
		}
		fmt.Fprintf(w, "pulled %s from %s: version %d -> %d (%s), %s changed; %s of metadata in %s\n",
			name, s.url, r.From, r.To, plural(r.Commits, "remote commit", "remote commits"), plural(r.PagesChanged, "page", "pages"),
			size(r.BytesRead), plural(r.Requests, "request", "requests"))
		if res.RewarmedPages > 0 {
			fmt.Fprintf(w, "rewarmed: fetched %s again, the changed pages %s had stored (--warm off leaves them to be fetched when read)\n",
				plural(res.RewarmedPages, "page", "pages"), g.dir)
		}
	})
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

func logCommand(g *globals) *command {
	var limit int
	return &command{
		name:    "log",
		args:    "NAME",
		summary: "list a volume's local commits, newest first",
		doc: `Lists the commits the data directory stores for the volume NAME, newest first:
the version each made and its parent, when, how many pages it changed, the
page count after it, and whether it is in the remote. A commit pulled from
the remote covers every version one push rolled together, so its parent may
be more than one version back.`,
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&limit, "limit", 0, "list only the newest `N` commits (0: all)")
		},
		run: func(ctx context.Context, args []string) error {
			if limit < 0 {
				return usagef("--limit %d: want 0 or more", limit)
			}
			return runLog(g, args[0], limit)
		},
	}
}

type logEntry struct {
	Version      uint64 `json:"version"`
	Parent       uint64 `json:"parent"`
	Time         string `json:"time"`
	PagesChanged int    `json:"pages_changed"`
	PageCount    uint32 `json:"page_count"`
	Pushed       bool   `json:"pushed"`
}

func runLog(g *globals, name string, limit int) error {
	s, err := g.open(name, existing)
	if err != nil {
		return err
	}
	defer s.Close()
	commits, err := s.v.Log()
	if err != nil {
		return err
	}
	slices.Reverse(commits)
	if limit > 0 && len(commits) > limit {
		commits = commits[:limit]
	}
	rs := s.v.Replication()
	list := make([]logEntry, len(commits))
	for i, c := range commits {
		list[i] = logEntry{Version: uint64(c.Version), Parent: uint64(c.Parent), Time: c.Time.UTC().Format(time.RFC3339Nano),
			PagesChanged: c.PagesChanged, PageCount: c.PageCount, Pushed: rs.Remote != "" && c.Version <= rs.Pushed}
	}
	return g.emit(list, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tPARENT\tTIME (UTC)\tCHANGED\tPAGES\tPUSHED")
		for i, c := range commits {
			pushed := "no"
			if list[i].Pushed {
				pushed = "yes"
			} else if rs.Remote == "" {
				pushed = "-"
			}
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", c.Version, c.Parent, c.Time.UTC().Format("2006-01-02 15:04:05.000"),
				count(c.PagesChanged), count(c.PageCount), pushed)
		}
		tw.Flush()
	})
}

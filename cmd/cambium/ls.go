package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/cambiumdb/cambium/engine"
)

func lsCommand(g *globals) *command {
	return &command{
		name:    "ls",
		summary: "list the volumes of the data directory, and with --remote those of the object store",
		doc: `Lists the volumes of the data directory with their newest version, page count,
size and replication state. With --remote (or CAMBIUM_REMOTE) it also lists
the volumes the object store holds, with their newest remote version; a
volume only the remote has is "remote-only".

States: local-only (no remote), synced, ahead (local versions not pushed),
behind (the remote has newer versions), diverged (another writer pushed
first; see cambium reset), remote-only.`,
		minArgs: 0, maxArgs: 0,
		run: func(ctx context.Context, _ []string) error { return runLs(ctx, g) },
	}
}

type lsEntry struct {
	Volume        string `json:"volume"`
	Version       uint64 `json:"version"`
	PageCount     uint32 `json:"page_count"`
	PageSize      int    `json:"page_size"`
	Bytes         int64  `json:"bytes"`
	State         string `json:"state"`
	PushedVersion uint64 `json:"pushed_version"`
	Remote        string `json:"remote"`
	RemoteVersion uint64 `json:"remote_version"`
	RemoteObjects int    `json:"remote_objects,omitempty"`
	RemoteBytes   int64  `json:"remote_bytes,omitempty"`
	Error         string `json:"error,omitempty"`
}

func runLs(ctx context.Context, g *globals) error {
	entries := map[string]*lsEntry{}
	if ok, err := engine.IsDataDir(g.dir); err != nil {
		return err
	} else if ok {
		e, err := g.openEngine(false)
		if err != nil {
			return err
		}
		defer closeEngine(e)
		names, err := e.Volumes()
		if err != nil {
			return err
		}
		for _, name := range names {
			v, err := e.Volume(name)
			if err != nil {
				entries[name] = &lsEntry{Volume: name, State: "error", Error: err.Error()}
				continue
			}
			head, pages, ps := v.Head()
			rs := v.Replication()
			entries[name] = &lsEntry{
				Volume: name, Version: uint64(head), PageCount: pages, PageSize: ps, Bytes: int64(pages) * int64(ps),
				State:         state(true, head, rs, rs.RemoteVersion),
				PushedVersion: uint64(rs.Pushed), Remote: rs.Remote, RemoteVersion: uint64(rs.RemoteVersion),
			}
		}
	} else if g.remote == "" {
		return fmt.Errorf("%s is not a Cambium data directory (pass --dir or set CAMBIUM_DIR, or --remote to list an object store)", g.dir)
	}
	if g.remote != "" {
		s, err := g.openStore(ctx, g.remote)
		if err != nil {
			return err
		}
		rvs, err := engine.ListRemoteVolumes(ctx, s)
		if err != nil {
			return err
		}
		for _, rv := range rvs {
			en := entries[rv.Name]
			if en == nil {
				en = &lsEntry{Volume: rv.Name, Version: uint64(rv.Version), PageCount: rv.PageCount, PageSize: rv.PageSize,
					Bytes: int64(rv.PageCount) * int64(rv.PageSize), State: "remote-only", Remote: g.remote}
				entries[rv.Name] = en
			}
			en.RemoteObjects, en.RemoteBytes = rv.Objects, rv.Bytes
			if rv.Err != nil {
				en.Error = rv.Err.Error()
				continue
			}
			if en.Remote == g.remote && en.State != "remote-only" {
				// Fresher than what the volume last saw of its remote.
				en.RemoteVersion = max(en.RemoteVersion, uint64(rv.Version))
				if en.State == "synced" && en.RemoteVersion > en.Version {
					en.State = "behind"
				}
			} else if en.State == "remote-only" {
				en.RemoteVersion = uint64(rv.Version)
			}
		}
	}
	list := make([]*lsEntry, 0, len(entries))
	for _, en := range entries {
		list = append(list, en)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Volume < list[j].Volume })
	return g.emit(list, func(w io.Writer) {
		if len(list) == 0 {
			fmt.Fprintln(w, "no volumes")
			return
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VOLUME\tVERSION\tPAGES\tSIZE\tSTATE\tREMOTE VERSION")
		for _, en := range list {
			rv := "-"
			if en.Remote != "" {
				rv = fmt.Sprint(en.RemoteVersion)
			}
			st := en.State
			if en.Error != "" {
				st += " (" + en.Error + ")"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", en.Volume, en.Version, count(en.PageCount), size(en.Bytes), st, rv)
		}
		tw.Flush()
	})
}

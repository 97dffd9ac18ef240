package main

import (
	"context"
	"os"

	"github.com/cambiumdb/cambium/bench"
)

// benchWorkerCommand is "cambium bench-worker", internal: a worker process
// of the bench's processes workload, steered by the bench through its
// standard input and output (bench.ServeProcessWorker). Help does not
// list it.
func benchWorkerCommand(g *globals) *command {
	return &command{
		name:    "bench-worker",
		summary: "internal: a worker process of cambium bench's processes workload",
		doc: `Internal: cambium bench starts this command for its processes workload and
steers it through standard input and output, one JSON request and one JSON
answer per line. It is not meant to be run by hand.`,
		minArgs: 0, maxArgs: 0,
		hidden: true,
		run: func(ctx context.Context, _ []string) error {
			return bench.ServeProcessWorker(ctx, os.Stdin, g.stdout)
		},
	}
}

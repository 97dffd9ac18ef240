// Command cambium manages Cambium volumes from the shell: it imports and
// exports plain SQLite files, lists and describes volumes, replicates them
// with an object store (push, pull, fetch, hydrate, reset), verifies them
// end to end, collects their remotes (gc), and runs the demo and the
// benchmarks.
//
//	cambium [--dir DIR] [--remote URL] [--json] COMMAND [flags] [args]
//
// Each command is one file here, with its own flag set and usage text; the
// work is done by the engine (and, for demo and bench, by the Go VFS and
// the bench package). Global flags may also follow the command. Exit
// status: 0 on success, 1 when the command failed, 2 for a usage error
// (unknown command or flag, wrong arguments, an invalid volume name or
// remote URL).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/term"

	"github.com/cambiumdb/cambium/engine"
	"github.com/cambiumdb/cambium/extension"
	"github.com/cambiumdb/cambium/remote"
	_ "github.com/cambiumdb/cambium/remote/s3" // s3:// for --remote
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// globals are the settings every command shares.
type globals struct {
	dir    string // data directory
	remote string // object store URL, "" for none
	json   bool   // machine output
	// retain is gc's --retain, "" when not given: the retention window,
	// which every volume a command opens follows (see retainConfig).
	retain string
	// cacheBudget is --cache-budget, "" when not given: the data
	// directory's disk budget (else CAMBIUM_CACHE_BUDGET, else none).
	cacheBudget string

	defaultDir     string
	stdout, stderr io.Writer
	tty            bool // stderr is a terminal: show progress bars
	logger         *slog.Logger
	stores         []remote.Store // opened, closed at exit
}

// command is one subcommand.
type command struct {
	name    string
	args    string // the positional arguments, for the usage line
	summary string // one line, for the command list
	doc     string // what it does, for its help
	minArgs int
	maxArgs int // -1: any number
	// noJSON: the command binds --json itself (bench).
	noJSON bool
	// hidden: an internal command that help does not list (bench-worker).
	hidden bool
	flags  func(fs *flag.FlagSet)
	run    func(ctx context.Context, args []string) error
}

// commands returns every command, in the order help lists them.
func commands(g *globals) []*command {
	return []*command{
		importCommand(g),
		exportCommand(g),
		lsCommand(g),
		infoCommand(g),
		logCommand(g),
		pushCommand(g),
		pullCommand(g),
		fetchCommand(g),
		hydrateCommand(g),
		resetCommand(g),
		verifyCommand(g),
		gcCommand(g),
		demoCommand(g),
		benchCommand(g),
		benchWorkerCommand(g),
	}
}

// usageError is a mistake in how the command was called: exit status 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// setting returns a command's setting: its flag's value, else its
// environment variable's, as parse reads it; set is false when neither is
// given. A bad value is a usage error that says where it came from.
func setting[T any](flagName, value, envName string, parse func(string) (T, error)) (v T, set bool, err error) {
	from := fmt.Sprintf("--%s %q", flagName, value)
	if value == "" {
		value = os.Getenv(envName)
		from = fmt.Sprintf("%s=%q", envName, value)
	}
	if value == "" {
		return v, false, nil
	}
	if v, err = parse(value); err != nil {
		var zero T
		return zero, false, usagef("%s: %v", from, err)
	}
	return v, true, nil
}

// budget returns the data directory's disk budget: --cache-budget, else
// CAMBIUM_CACHE_BUDGET, else 0 (unbounded).
func (g *globals) budget() (int64, error) {
	n, _, err := setting("cache-budget", g.cacheBudget, "CAMBIUM_CACHE_BUDGET", extension.ParseSize)
	return n, err
}

// retainConfig returns the retention window as the VFS's settings hold
// it: gc's --retain, else CAMBIUM_RETAIN, else unset (the default).
func (g *globals) retainConfig() (extension.Config, error) {
	var c extension.Config
	var err error
	c.Retain, c.HasRetain, err = setting("retain", g.retain, "CAMBIUM_RETAIN", extension.ParseRetain)
	return c, err
}

// exitCode maps a command's error to the exit status.
func exitCode(err error) int {
	var u usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &u), errors.Is(err, engine.ErrInvalidName), errors.Is(err, remote.ErrInvalidURL):
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	if f, ok := stderr.(*os.File); ok {
		g.tty = term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb"
	}
	g.defaultDir = defaultDir()
	g.dir = g.defaultDir
	g.remote = os.Getenv("CAMBIUM_REMOTE")
	g.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	slog.SetDefault(g.logger)
	defer func() {
		for _, s := range g.stores {
			s.Close()
		}
	}()

	top := flag.NewFlagSet("cambium", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	g.bind(top, true)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(g, stdout)
			return 0
		}
		fmt.Fprintf(stderr, "cambium: %v\nrun 'cambium help' for usage\n", err)
		return 2
	}
	args = top.Args()
	if len(args) == 0 {
		printHelp(g, stderr)
		return 2
	}
	name, args := args[0], args[1:]
	cmds := commands(g)
	if name == "help" {
		return helpCommand(g, cmds, args)
	}
	var cmd *command
	for _, c := range cmds {
		if c.name == name {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "cambium: unknown command %q\nrun 'cambium help' for the list of commands\n", name)
		return 2
	}

	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	g.bind(fs, !cmd.noJSON)
	pos, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(g, cmd, fs, stdout)
			return 0
		}
		fmt.Fprintf(stderr, "cambium %s: %v\n", cmd.name, err)
		fmt.Fprintf(stderr, "usage: %s\nrun 'cambium help %s' for more\n", usageLine(cmd), cmd.name)
		return 2
	}
	if len(pos) < cmd.minArgs || (cmd.maxArgs >= 0 && len(pos) > cmd.maxArgs) {
		what := "missing arguments"
		if len(pos) > cmd.minArgs {
			what = fmt.Sprintf("too many arguments (%s)", strings.Join(pos[cmd.maxArgs:], " "))
		}
		fmt.Fprintf(stderr, "cambium %s: %s\nusage: %s\nrun 'cambium help %s' for more\n", cmd.name, what, usageLine(cmd), cmd.name)
		return 2
	}
	if g.cacheBudget != "" {
		// A mistyped size is a usage error, whichever command was given
		// it and whether or not it opens the data directory.
		if _, err := g.budget(); err != nil {
			fmt.Fprintf(stderr, "cambium %s: %v\nusage: %s\n", cmd.name, err, usageLine(cmd))
			return 2
		}
	}
	err = cmd.run(ctx, pos)
	if err == nil {
		return 0
	}
	if !errors.Is(err, errReported) {
		fmt.Fprintf(stderr, "cambium %s: %v\n", cmd.name, err)
	}
	code := exitCode(err)
	if code == 2 {
		fmt.Fprintf(stderr, "usage: %s\n", usageLine(cmd))
	}
	return code
}

// errReported is a failure the command has already described.
var errReported = errors.New("failed")

// bind adds the global flags to fs, so that they may follow the command.
func (g *globals) bind(fs *flag.FlagSet, withJSON bool) {
	fs.StringVar(&g.dir, "dir", g.dir, "local data directory `DIR` (CAMBIUM_DIR)")
	fs.StringVar(&g.remote, "remote", g.remote, "object store `URL`: file:///path, s3://bucket/prefix (CAMBIUM_REMOTE)")
	fs.StringVar(&g.cacheBudget, "cache-budget", g.cacheBudget, "bound the disk of the page images the data directory stores (with their stubs and records) to `SIZE` (512MiB, 20GiB): past it, pages safe in the remote are evicted (CAMBIUM_CACHE_BUDGET; default unbounded)")
	if withJSON {
		fs.BoolVar(&g.json, "json", g.json, "print the result as JSON on standard output")
	}
}

var globalFlags = map[string]bool{"dir": true, "remote": true, "json": true, "cache-budget": true}

// parseArgs parses flags wherever they appear among the positional
// arguments ("export NAME FILE --version 3"); everything after "--" is
// positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// defaultDir is the data directory when neither --dir nor CAMBIUM_DIR says:
// the Go VFS's default, so that both find the same volumes.
func defaultDir() string {
	cfg, err := extension.ParseConfig(nil, func(k string) string {
		switch k {
		case "CAMBIUM_DIR", "XDG_DATA_HOME", "HOME":
			return os.Getenv(k)
		}
		return "" // the other settings are the commands' business
	})
	if err != nil {
		return ""
	}
	return cfg.Dir
}

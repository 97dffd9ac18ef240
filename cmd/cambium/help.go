package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// helpCommand is "cambium help [COMMAND]".
func helpCommand(g *globals, cmds []*command, args []string) int {
	if len(args) == 0 {
		printHelp(g, g.stdout)
		return 0
	}
	if len(args) > 1 {
		fmt.Fprintf(g.stderr, "cambium help: too many arguments\nusage: cambium help [COMMAND]\n")
		return 2
	}
	for _, c := range cmds {
		if c.name == args[0] {
			fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
			if c.flags != nil {
				c.flags(fs)
			}
			g.bind(fs, !c.noJSON)
			printCommandHelp(g, c, fs, g.stdout)
			return 0
		}
	}
	if args[0] == "help" {
		fmt.Fprintln(g.stdout, "usage: cambium help [COMMAND]\n\nPrints the list of commands, or how to use one.")
		return 0
	}
	fmt.Fprintf(g.stderr, "cambium help: unknown command %q\nrun 'cambium help' for the list of commands\n", args[0])
	return 2
}

func printHelp(g *globals, w io.Writer) {
	fmt.Fprint(w, `cambium manages Cambium volumes: SQLite databases stored as versioned pages,
replicated through object storage.

usage: cambium [global flags] COMMAND [flags] [arguments]

commands:
`)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands(g) {
		if c.hidden {
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	fmt.Fprintf(tw, "  help\tthe list of commands, or how to use one: cambium help COMMAND\n")
	tw.Flush()
	fmt.Fprintf(w, `
global flags (before or after the command):
  --dir DIR      local data directory (CAMBIUM_DIR; default %s)
  --remote URL   object store: file:///path, s3://bucket/prefix (CAMBIUM_REMOTE);
                 credentials, region and endpoint come from the AWS chain
  --json         print results as JSON on standard output

Volumes are named like files, with '/' for namespaces: acme/orders.db. The same
data directory and names work through the Go VFS (file:NAME?vfs=cambium&dir=DIR).
Any number of processes may open a data directory at once: the first owns it
and serves the others, and one of them takes over when it exits.

Exit status: 0 on success, 1 when the command failed, 2 for a usage error.
`, orNone(g.defaultDir))
}

func orNone(s string) string {
	if s == "" {
		return "(none: no home directory)"
	}
	return s
}

func usageLine(c *command) string {
	s := "cambium " + c.name + " [flags]"
	if c.args != "" {
		s += " " + c.args
	}
	return s
}

func printCommandHelp(g *globals, c *command, fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", usageLine(c), strings.TrimSpace(c.doc))
	var own, global []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if globalFlags[f.Name] && !(c.noJSON && f.Name == "json") {
			global = append(global, f)
		} else {
			own = append(own, f)
		}
	})
	if len(own) > 0 {
		fmt.Fprintf(w, "\nflags:\n")
		printFlags(w, own)
	}
	fmt.Fprintf(w, "\nglobal flags:\n")
	printFlags(w, global)
}

func printFlags(w io.Writer, flags []*flag.Flag) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range flags {
		typ, usage := flag.UnquoteUsage(f)
		name := "--" + f.Name
		if typ != "" {
			name += " " + typ
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  %s\t%s%s\n", name, usage, def)
	}
	tw.Flush()
}

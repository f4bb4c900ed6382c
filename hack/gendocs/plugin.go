package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kratos-injector/kratos-injector/internal/cli"
	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// pluginDoc is docs/plugin.md: every command of `kubectl kratos`, from the cobra tree itself
// (written here rather than with cobra/doc, which would add go-md2man and blackfriday to the
// module for a page this short).
func pluginDoc() ([]byte, error) {
	root := newRoot()
	var b bytes.Buffer
	fmt.Fprintf(&b, generatedHeader, "the cobra command tree of internal/cli")
	b.WriteString("# `kubectl kratos` command reference\n\n")
	b.WriteString("Install the binary `kubectl-kratos` on your PATH (or with krew: `plugins/kratos.yaml`); kubectl then runs it as `kubectl kratos`. " +
		"Exit status: 0 success, 1 failure, 2 usage error; an interrupted command (Ctrl-C, SIGTERM) exits 1 with `error: interrupted`. " +
		"Shell completion under kubectl (1.26+): put `plugins/kubectl_complete-kratos` on your PATH next to `kubectl-kratos`; " +
		"`kubectl kratos <TAB>` then completes commands, flags and their values, instance names and identity IDs and emails.\n\n")

	cmds := commands(root)
	b.WriteString("| Command | What it does |\n|---|---|\n")
	for _, c := range cmds[1:] {
		fmt.Fprintf(&b, "| [`%s`](#%s) | %s |\n", c.CommandPath(), anchor(c.CommandPath()), cell(c.Short))
	}

	b.WriteString("\n## Global flags\n\nEvery command takes these (kubectl's connection flags, and the instance selection):\n\n```\n")
	b.WriteString(flagUsages(root.PersistentFlags()))
	b.WriteString("```\n")

	for _, c := range cmds[1:] {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n```\n%s\n```\n", c.CommandPath(), text(c.Short), c.UseLine())
		if c.Long != "" {
			fmt.Fprintf(&b, "\n%s\n", text(c.Long))
		}
		if subs := available(c); len(subs) > 0 {
			b.WriteString("\nSubcommands:\n\n")
			for _, s := range subs {
				fmt.Fprintf(&b, "- [`%s`](#%s): %s\n", s.CommandPath(), anchor(s.CommandPath()), text(s.Short))
			}
		}
		if len(c.Aliases) > 0 {
			fmt.Fprintf(&b, "\nAliases: %s\n", codeList(c.Aliases))
		}
		if c.Example != "" {
			fmt.Fprintf(&b, "\nExamples:\n\n```\n%s\n```\n", strings.TrimRight(c.Example, "\n"))
		}
		if f := flagUsages(c.LocalNonPersistentFlags()); f != "" {
			fmt.Fprintf(&b, "\nFlags:\n\n```\n%s```\n", f)
		}
	}
	return b.Bytes(), nil
}

// newRoot builds the plugin's command tree as the binary does.
func newRoot() *cobra.Command {
	return cli.NewRootCmd(genericiooptions.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard})
}

// commands lists root and every available command under it, depth first in cobra's order.
func commands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, s := range available(c) {
		out = append(out, commands(s)...)
	}
	return out
}

func available(c *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() && s.Name() != "help" && s.Name() != "completion" {
			out = append(out, s)
		}
	}
	return out
}

// text escapes prose for Markdown: angle brackets (<public-url>) would read as HTML.
func text(s string) string {
	return strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(s)
}

// anchor is GitHub's heading anchor for a command path.
func anchor(path string) string { return strings.ReplaceAll(strings.ToLower(path), " ", "-") }

// flagUsages prints flags as `--help` does, with the defaults that depend on the machine or
// the build (the home directory, the plugin version in the injector image) written portably.
func flagUsages(fs *pflag.FlagSet) string {
	home, _ := os.UserHomeDir()
	fs.VisitAll(func(f *pflag.Flag) {
		if home != "" && home != "/" && strings.HasPrefix(f.DefValue, home) {
			f.DefValue = "$HOME" + strings.TrimPrefix(f.DefValue, home)
		}
		if f.DefValue == inject.DefaultInjectorImage {
			i := strings.LastIndex(f.DefValue, ":")
			f.DefValue = f.DefValue[:i+1] + "<plugin version>"
		}
	})
	return fs.FlagUsages()
}

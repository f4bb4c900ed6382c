package cli

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/actions"
	"github.com/kratos-injector/kratos-injector/internal/instance"
)

// Shell completion. cobra's `completion` command writes the shells' scripts for the plugin run
// as kubectl-kratos; under kubectl (1.26 and later) `kubectl kratos <TAB>` runs the executable
// kubectl_complete-kratos found on the PATH (plugins/kubectl_complete-kratos), which asks the
// plugin through cobra's hidden __complete command. Besides commands and flags, the plugin
// completes from the cluster: --instance with the instances of the namespace, identity IDs and
// --email with the identities of the selected instance (one admin API call for at most
// completionLimit identities: cheap enough for a TAB, and the only one that opens a
// port-forward), --type, -o and --dry-run with their values. A completion that cannot reach the
// cluster offers nothing rather than an error.

// completionTimeout bounds the cluster and admin API calls of one completion.
const completionTimeout = 5 * time.Second

// completionLimit is the most identities a completion lists.
const completionLimit = 200

func completionContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, completionTimeout)
}

// completeInstances offers the names of the instances in the namespace (-n).
func (g *Globals) completeInstances(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	ctx, cancel := completionContext(cmd)
	defer cancel()
	k, err := g.kube()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	pods, err := instance.List(ctx, k.clientset, instance.Selector{Namespace: k.namespace, LabelSelector: g.Selector})
	if err != nil {
		cobra.CompDebugln("list instances: "+err.Error(), true)
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, in := range instance.Group(pods) {
		if strings.HasPrefix(in.Name, toComplete) && !slices.Contains(names, in.Name) {
			names = append(names, in.Name)
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeIdentities returns a completion function of identity IDs (described by their email)
// or, with emails, of email login identifiers. maxArgs is how many identity IDs the command
// takes (0: any number).
func (g *Globals) completeIdentities(emails bool, maxArgs int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if !emails && maxArgs > 0 && len(args) >= maxArgs {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := completionContext(cmd)
		defer cancel()
		saved := g.AdminTimeout
		g.AdminTimeout = completionTimeout
		defer func() { g.AdminTimeout = saved }()
		if g.Validate() != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		a, err := g.connectAdmin(ctx)
		if err != nil {
			cobra.CompDebugln("connect to the admin API: "+err.Error(), true)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer a.Close()
		ids, err := actions.ListIdentities(ctx, a.APIClient, actions.ListOptions{PageSize: completionLimit, Limit: completionLimit})
		if err != nil {
			cobra.CompDebugln("list identities: "+err.Error(), true)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for i := range ids {
			id := &ids[i]
			email := trait(id, "email")
			value, desc := id.Id, email
			if emails {
				value, desc = email, id.Id
			}
			// A value with blanks or controls would break the completion protocol (one
			// candidate per line, a tab before its description) or the shell's word: left out.
			if value == "<none>" || !strings.HasPrefix(value, toComplete) || !completable(value) || slices.Contains(args, value) {
				continue
			}
			out = append(out, value+"\t"+escapeCell(desc))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func completable(s string) bool {
	for _, r := range s {
		if r <= ' ' || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return false
		}
	}
	return s != ""
}

// completeOIDC offers the linked OIDC accounts of the identity already on the command line.
func (g *Globals) completeOIDC(cmd *cobra.Command, ref actions.Ref, toComplete string) ([]string, cobra.ShellCompDirective) {
	if ref.Validate() != nil || g.Validate() != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := completionContext(cmd)
	defer cancel()
	saved := g.AdminTimeout
	g.AdminTimeout = completionTimeout
	defer func() { g.AdminTimeout = saved }()
	a, err := g.connectAdmin(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer a.Close()
	res, err := actions.ListOIDC(ctx, a.APIClient, ref)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, acc := range res.Accounts {
		if strings.HasPrefix(acc.Identifier, toComplete) && completable(acc.Identifier) {
			out = append(out, acc.Identifier)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

package cli

import (
	"context"

	client "github.com/ory/kratos-client-go"
	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// GetOptions are `identity get`.
type GetOptions struct {
	g      *Globals
	Ref    refFlags
	Output outputFlags
}

func newGetCmd(g *Globals) *cobra.Command {
	o := &GetOptions{g: g}
	cmd := &cobra.Command{
		Use:   "get (ID | --email EMAIL)",
		Short: "Show one identity",
		Example: `  kubectl kratos identity get 9f425a8d-7f3f-4b5c-9b1e-2f6c3c0e6a51
  kubectl kratos identity get --email ada@example.com -o yaml
  kubectl kratos identity get --email ada@example.com -o jsonpath='{.state}'
  kubectl kratos identity get --email ada@example.com -o name`,
		Args: identityArg,
		RunE: runE(o),
	}
	o.Ref.add(cmd)
	completeRef(g, cmd, 1)
	o.Output.addObjects(cmd, true)
	return cmd
}

func (o *GetOptions) Complete(_ *cobra.Command, args []string) error {
	o.Ref.complete(args)
	return nil
}

func (o *GetOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if err := o.Ref.Validate(); err != nil {
		return err
	}
	return o.Output.Validate()
}

func (o *GetOptions) Run(ctx context.Context) error {
	a, err := o.g.connectAdmin(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	i, err := actions.GetIdentity(ctx, a.APIClient, o.Ref.ref())
	if err != nil {
		return a.Explain(err)
	}
	return o.Output.printIdentities(o.g.Streams.Out, []client.Identity{*i}, true)
}

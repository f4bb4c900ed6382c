package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/kratos-injector/kratos-injector/internal/selfimage"
)

// newUninstallCmd is `webhook uninstall`: the first step of removing the injector, deleting its
// MutatingWebhookConfiguration so that no admission fails while the rest goes (failurePolicy
// Fail). The chart runs it as a pre-delete hook.
func newUninstallCmd() *cobra.Command {
	var kubeconfig, configName string
	timeout := 60 * time.Second
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Delete the webhook configuration (the first step of an uninstall)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := restConfig(kubeconfig)
			if err != nil {
				return err
			}
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			deleted, err := selfimage.DeleteWebhookConfiguration(ctx, client, configName)
			if err != nil {
				return err
			}
			if deleted {
				fmt.Fprintf(cmd.OutOrStdout(), "mutatingwebhookconfiguration %s deleted\n", configName)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "mutatingwebhookconfiguration %s not found: nothing to do\n", configName)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configName, "webhook-config-name", "kratos-injector", "the MutatingWebhookConfiguration to delete")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default: in-cluster, else $KUBECONFIG)")
	cmd.Flags().DurationVar(&timeout, "timeout", timeout, "give up after this long")
	return cmd
}

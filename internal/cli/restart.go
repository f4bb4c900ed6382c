package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kratos-injector/kratos-injector/internal/instance"
)

// RestartOptions are `restart`.
type RestartOptions struct {
	g       *Globals
	Wait    bool
	Timeout time.Duration
	DryRun  dryRunFlags

	now func() time.Time
}

func newRestartCmd(g *Globals) *cobra.Command {
	o := &RestartOptions{g: g, now: time.Now}
	cmd := &cobra.Command{
		Use:   "restart [--instance NAME] [--wait] [--dry-run=none|client|server]",
		Short: "Roll the workloads of an instance, as kubectl rollout restart does, so its pods render their config anew",
		Long: `Kratos reads the config its pod rendered when it started. A Secret or ConfigMap changed since
(a rotated SMTP or database password, an IdP client secret, a new identity schema) reaches Kratos
when the pod is replaced: "kubectl kratos status" marks such pods stale. restart rolls every
Deployment, StatefulSet and DaemonSet whose pods make up the instance, exactly as
"kubectl rollout restart" does (a new kubectl.kubernetes.io/restartedAt annotation on the pod
template), so the rollout follows the workload's own strategy, readiness and
PodDisruptionBudget. With --wait it then waits until each rollout completes, as
"kubectl rollout status" does.

Pods that no such workload owns (bare pods, Jobs) are named, and not touched. It needs "list"
on pods, "get" on replicasets and "patch" on the workloads.`,
		Example: `  kubectl kratos restart --instance shop --wait
  kubectl kratos restart --dry-run=server`,
		Args: noArgs,
		RunE: runE(o),
	}
	cmd.Flags().BoolVar(&o.Wait, "wait", false, "wait until every rollout completes")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "with --wait: give up after this long")
	o.DryRun.add(cmd)
	return cmd
}

func (o *RestartOptions) Complete(*cobra.Command, []string) error { return nil }

func (o *RestartOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if o.g.AdminURL != "" {
		return errors.New("--admin-url does not apply to restart: it rolls the workloads through the API server")
	}
	if err := o.DryRun.Validate(); err != nil {
		return err
	}
	if o.Timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	return nil
}

func (o *RestartOptions) Run(ctx context.Context) error {
	k, err := o.g.kube()
	if err != nil {
		return err
	}
	in, err := o.g.findInstance(ctx, k)
	if err != nil {
		return err
	}
	workloads, unmanaged, err := instance.Workloads(ctx, k.clientset, in.Pods)
	if err != nil {
		return err
	}
	for _, u := range unmanaged {
		fmt.Fprintf(o.g.Streams.ErrOut, "Warning: %s\n", u)
	}
	if len(workloads) == 0 {
		return fmt.Errorf("instance %s has no Deployment, StatefulSet or DaemonSet to restart", in.Name)
	}
	suffix := ""
	if o.DryRun.any() {
		suffix = " " + o.DryRun.suffix()
	}
	at := o.now()
	for _, w := range workloads {
		// Client: the workloads were found (a restart cannot be named without them); the
		// patch is not sent. Server: the API server validates it and persists nothing.
		if !o.DryRun.client() {
			if err := instance.Restart(ctx, k.clientset, w, at, o.DryRun.server()); err != nil {
				return fmt.Errorf("restart %s: %w", w, err)
			}
		}
		fmt.Fprintf(o.g.Streams.Out, "%s restarted%s\n", w, suffix)
	}
	if !o.Wait || o.DryRun.any() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	for _, w := range workloads {
		last := ""
		for {
			done, msg, err := instance.RolloutStatus(ctx, k.clientset, w)
			if err != nil {
				return err
			}
			if done {
				fmt.Fprintf(o.g.Streams.Out, "%s %s\n", w, msg)
				break
			}
			if msg != last {
				fmt.Fprintf(o.g.Streams.ErrOut, "Waiting for %s rollout to finish: %s...\n", w, msg)
				last = msg
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: rollout not finished within %s (%s); see kubectl rollout status %s -n %s", w, o.Timeout, msg, w, w.Namespace)
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
)

// printTable writes the report as kubectl-style tables: instances, pods, OIDC providers, then
// the webhook, separated by blank lines.
func (o *StatusOptions) printTable(rep *StatusReport) error {
	w := o.g.Streams.Out
	now := o.now()
	ns := func(row []string, namespace string) []string {
		if o.AllNamespaces {
			return append([]string{namespace}, row...)
		}
		return row
	}
	head := func(h ...string) []string { return ns(h, "NAMESPACE") }
	list := func(v []string) string {
		if len(v) == 0 {
			return "<none>"
		}
		return strings.Join(v, ",")
	}

	if len(rep.Instances) > 0 {
		var rows [][]string
		for _, in := range rep.Instances {
			injected := 0
			for _, p := range in.Pods {
				if !p.Ignored {
					injected++
				}
			}
			rows = append(rows, ns([]string{in.Name, fmt.Sprintf("%d/%d", in.ReadyPods, injected),
				list(in.KratosImages), list(in.InjectorVersions), list(in.SpecHashes), orNone(in.Courier)}, in.Namespace))
		}
		if err := o.Output.printTable(w, head("INSTANCE", "READY", "KRATOS IMAGE", "INJECTOR", "SPEC", "COURIER"), rows); err != nil {
			return err
		}

		rows = nil
		for _, in := range rep.Instances {
			for _, p := range in.Pods {
				reason := p.Reason
				if len(p.Stale) > 0 {
					stale := "stale: " + strings.Join(p.Stale, ", ") + " changed after the config was rendered (kubectl kratos restart)"
					if reason != "" {
						reason += "; " + stale
					} else {
						reason = stale
					}
				}
				if reason == "" {
					reason = "-"
				}
				rows = append(rows, ns([]string{p.Name, in.Name, strconv.FormatBool(p.Ready), p.Phase,
					strconv.Itoa(int(p.Restarts)), duration.HumanDuration(now.Sub(p.Created.Time)), orNone(p.SpecHash), reason}, in.Namespace))
			}
		}
		fmt.Fprintln(w)
		if err := o.Output.printTable(w, head("POD", "INSTANCE", "READY", "STATUS", "RESTARTS", "AGE", "SPEC", "REASON"), rows); err != nil {
			return err
		}

		rows = nil
		var notes []string
		for _, in := range rep.Instances {
			for _, p := range in.Providers {
				id := p.ID
				if !p.Verified {
					id += " (Secret name)"
				}
				rows = append(rows, ns([]string{in.Name, id, p.Secret, p.RedirectURI}, in.Namespace))
				if p.Note != "" {
					notes = append(notes, "Note: "+p.Note)
				}
			}
		}
		if len(rows) > 0 {
			fmt.Fprintln(w)
			if err := o.Output.printTable(w, head("INSTANCE", "PROVIDER", "SECRET", "REDIRECT URI"), rows); err != nil {
				return err
			}
			for _, n := range notes {
				fmt.Fprintln(w, n)
			}
		}
		fmt.Fprintln(w)
	}

	wh := rep.Webhook
	if len(wh.Configurations) == 0 {
		_, err := fmt.Fprintf(w, "Webhook: %s\n", wh.Message)
		return err
	}
	var rows [][]string
	for _, c := range wh.Configurations {
		ca, expires := "valid", "<none>"
		if !c.CAValid {
			ca = "INVALID: " + c.Problem
		}
		if c.CAExpires != nil {
			expires = fmt.Sprintf("%s (in %s)", c.CAExpires.UTC().Format(time.RFC3339), duration.HumanDuration(c.CAExpires.Sub(now)))
		}
		rows = append(rows, []string{c.Name, strings.Join(c.Webhooks, ","), expires, ca})
	}
	return o.Output.printTable(w, []string{"WEBHOOK CONFIGURATION", "WEBHOOKS", "CA EXPIRES", "CA"}, rows)
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

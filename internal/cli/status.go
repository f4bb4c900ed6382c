package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance"
)

// StatusOptions are `status`.
type StatusOptions struct {
	g             *Globals
	AllNamespaces bool
	Output        outputFlags

	now func() time.Time
}

func newStatusCmd(g *Globals) *cobra.Command {
	o := &StatusOptions{g: g, now: time.Now}
	cmd := &cobra.Command{
		Use:   "status [-A] [-o table|json|yaml|jsonpath=...|go-template=...]",
		Short: "Show the injected Kratos instances: pods, readiness, versions, why a pod is not Ready, OIDC redirect URIs, the webhook's CA",
		Long: `Show the Kratos instances of the namespace (or of every namespace with -A): per instance its
pods, how many are Ready, the Kratos image, the injector version and spec hash each pod was
injected with (pods with different hashes run different configs, e.g. during a rollout), and
for each pod that is not Ready, why: the render init container's one-line error (a missing
Secret or key), a database waiting for "kubectl kratos migrate", a crashing container with its
last message, or what the pod's status says. A pod that carries the instance label but was
not injected by kratos-injector is listed as "not injected by kratos-injector: ignored", with
what it lacks; it counts for nothing else, and no other command ever uses it.

For each external identity provider (the kratos-injector.io/idp-secrets annotation) it prints
the redirect URI to register at the provider: <public-url>/self-service/methods/oidc/callback/<id>.
The provider id is read from the provider's Secret (key id, else provider); without the right
to get Secrets, the Secret name stands in for the id, and the output says so.

It also checks that the webhook is registered (the MutatingWebhookConfiguration kratos-injector,
or any with a webhook named *.kratos-injector.io) and that the CA bundle the API server trusts
for it parses and has not expired, and shows when it expires.

COURIER says who dispatches the instance's mail. With Postgres, replicas share the database and
exactly one pod's kratos-courier container runs the courier, while it holds the database's
courier lock: the column names that pod (asked from inside a running kratos-courier container,
through pods/exec), or "none". With SQLite each pod has its own database and courier
("in-process"); "off" when the courier is disabled.

It needs "list" on pods; "get" on secrets, "list" on mutatingwebhookconfigurations and "create"
on pods/exec (for COURIER) are used when granted.`,
		Example: `  kubectl kratos status
  kubectl kratos status -A
  kubectl kratos status --instance shop -o yaml`,
		Args: noArgs,
		RunE: runE(o),
	}
	cmd.Flags().BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "show the instances of every namespace")
	o.Output.addObjects(cmd, false)
	return cmd
}

func (o *StatusOptions) Complete(*cobra.Command, []string) error { return nil }

func (o *StatusOptions) Validate() error {
	if err := o.g.Validate(); err != nil {
		return err
	}
	if o.g.AdminURL != "" {
		return errors.New("--admin-url does not apply to status: it reads the pods through the API server")
	}
	if o.Output.Format == "name" {
		return errors.New(`-o "name": status is one report, not objects with names (-o jsonpath= picks from it)`)
	}
	return o.Output.Validate()
}

// StatusReport is what `status -o json|yaml` prints.
type StatusReport struct {
	Instances []InstanceStatus `json:"instances"`
	Webhook   WebhookStatus    `json:"webhook"`
}

// InstanceStatus is one instance: the pods sharing a kratos-injector.io/instance value.
type InstanceStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// ReadyPods counts the Ready injected pods (ignored pods never count).
	ReadyPods int `json:"readyPods"`
	// KratosImages, InjectorVersions and SpecHashes are the distinct values over the pods.
	KratosImages     []string `json:"kratosImages"`
	InjectorVersions []string `json:"injectorVersions"`
	SpecHashes       []string `json:"specHashes"`
	PublicURL        string   `json:"publicURL,omitempty"`
	// Courier says who dispatches the instance's mail: the pod that holds the database's
	// courier lock (Postgres), "in-process" (SQLite: each pod its own), "off", "none" (no pod
	// holds the lock) or "unknown: <why>".
	Courier   string           `json:"courier,omitempty"`
	Providers []ProviderStatus `json:"providers,omitempty"`
	Pods      []PodStatus      `json:"pods"`
}

// PodStatus is one pod of an instance.
type PodStatus struct {
	Name            string      `json:"name"`
	Phase           string      `json:"phase"`
	Ready           bool        `json:"ready"`
	KratosImage     string      `json:"kratosImage,omitempty"`
	InjectorVersion string      `json:"injectorVersion,omitempty"`
	SpecHash        string      `json:"specHash,omitempty"`
	Migrate         string      `json:"migrate,omitempty"`
	Restarts        int32       `json:"restarts"`
	Created         metav1.Time `json:"created"`
	// Ignored marks a pod that carries the instance label but was not injected by
	// kratos-injector: the plugin never uses it (Reason says why it was not taken).
	Ignored bool `json:"ignored,omitempty"`
	// Reason says why the pod is not Ready (empty when it is), or why it is ignored.
	Reason string `json:"reason,omitempty"`
	// Stale lists the Secrets and ConfigMaps written after the pod rendered its config: Kratos
	// runs without the change until the pod restarts (kubectl kratos restart).
	Stale []string `json:"stale,omitempty"`
}

// ProviderStatus is an external OIDC provider of an instance.
type ProviderStatus struct {
	Secret string `json:"secret"`
	// ID is the provider id Kratos uses (read from the Secret), or the Secret name when the
	// Secret could not be read (Verified false).
	ID          string `json:"id"`
	Verified    bool   `json:"verified"`
	RedirectURI string `json:"redirectURI"`
	Note        string `json:"note,omitempty"`
}

// WebhookStatus says whether the injector's webhook is registered and its CA bundle valid.
type WebhookStatus struct {
	// Checked is false when the configurations could not be read (Message says why).
	Checked        bool            `json:"checked"`
	Message        string          `json:"message,omitempty"`
	Configurations []WebhookConfig `json:"configurations"`
}

// WebhookConfig is one MutatingWebhookConfiguration of the injector.
type WebhookConfig struct {
	Name     string   `json:"name"`
	Webhooks []string `json:"webhooks"`
	CAValid  bool     `json:"caValid"`
	// CAExpires is the earliest expiry of the CA bundle's certificates.
	CAExpires *metav1.Time `json:"caExpires,omitempty"`
	Problem   string       `json:"problem,omitempty"`
}

func (o *StatusOptions) Run(ctx context.Context) error {
	k, err := o.g.kube()
	if err != nil {
		return err
	}
	ns := k.namespace
	if o.AllNamespaces {
		ns = metav1.NamespaceAll
	}
	pods, err := instance.List(ctx, k.clientset, instance.Selector{Namespace: ns, Instance: o.g.Instance, LabelSelector: o.g.Selector})
	if err != nil {
		return err
	}
	rep := &StatusReport{Instances: o.instances(ctx, k, pods)}
	rep.Webhook = webhookStatus(ctx, k.clientset, o.now())
	if o.Output.structured() {
		return o.Output.printStructured(o.g.Streams.Out, rep)
	}
	if !o.Output.table() {
		// The templates and custom columns see the report as -o json shows it, as an object
		// of kind Status.
		obj, err := toObject("Status", "", rep)
		if err != nil {
			return err
		}
		delete(obj.Object, "metadata")
		return o.Output.printObject(o.g.Streams.Out, obj, nil)
	}
	if len(rep.Instances) == 0 {
		where := "in namespace " + ns
		if o.AllNamespaces {
			where = "in any namespace"
		}
		fmt.Fprintf(o.g.Streams.ErrOut, "No Kratos instance %s: label a workload's pod template with %s=true.\n", where, inject.LabelInject)
	}
	return o.printTable(rep)
}

// instances reports on each instance of pods, sorted by namespace and name.
func (o *StatusOptions) instances(ctx context.Context, k *kube, pods []corev1.Pod) []InstanceStatus {
	secrets := &secretReader{cs: k.clientset, cache: map[string]secretResult{}}
	inputs := &instance.InputReader{CS: k.clientset}
	groups := instance.Group(pods)
	out := make([]InstanceStatus, 0, len(groups))
	for _, in := range groups {
		st := o.instance(ctx, secrets, inputs, in)
		st.Courier = courierStatus(ctx, k, in)
		out = append(out, st)
	}
	return out
}

// courierStatus asks a running kratos-courier which pod holds the courier lock (Postgres).
func courierStatus(ctx context.Context, k *kube, in *instance.Instance) string {
	var gated *corev1.Pod
	mode := ""
	for i := range in.Pods {
		p := &in.Pods[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		if m := instance.CourierMode(p); mode == "" || m == instance.CourierGated {
			mode = m
		}
		if st := instance.ContainerStatus(p, inject.ContainerCourier); st != nil && st.State.Running != nil && gated == nil {
			gated = p
		}
	}
	switch {
	case mode == "":
		return ""
	case mode != instance.CourierGated:
		return mode
	case gated == nil:
		return "unknown: no pod's " + inject.ContainerCourier + " container is running"
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	holder, err := instance.CourierHolder(ctx, k.config, k.clientset, gated)
	switch {
	case err != nil:
		return "unknown: " + err.Error()
	case holder == "":
		return "none"
	}
	return holder
}

func (o *StatusOptions) instance(ctx context.Context, secrets *secretReader, inputs *instance.InputReader, group *instance.Instance) InstanceStatus {
	ns := group.Namespace
	in := InstanceStatus{Namespace: ns, Name: group.Name}
	// By name, for display (the group's own order is the plugin's choice of pod). Pods that
	// carry the instance label without being injected are shown, marked ignored, and count for
	// nothing else: the plugin never reaches them.
	type entry struct {
		pod *corev1.Pod
		why string // why the pod is ignored; "" for an injected pod
	}
	pods := make([]entry, 0, len(group.Pods)+len(group.Ignored))
	for i := range group.Pods {
		pods = append(pods, entry{pod: &group.Pods[i]})
	}
	for i := range group.Ignored {
		pods = append(pods, entry{pod: &group.Ignored[i].Pod, why: group.Ignored[i].Why})
	}
	sort.Slice(pods, func(a, b int) bool { return pods[a].pod.Name < pods[b].pod.Name })
	var newest *corev1.Pod
	for _, e := range pods {
		p := e.pod
		if e.why != "" {
			ps := podStatus(p, nil)
			ps.Ignored, ps.Reason = true, instance.NotInjectedReason(e.why)
			in.Pods = append(in.Pods, ps)
			continue
		}
		spec, _ := inject.ParseAnnotations(p.Annotations, "")
		ps := podStatus(p, spec)
		if p.DeletionTimestamp == nil {
			// Inputs that cannot be read (no "get" on Secrets) are not reported: unknown is
			// not stale.
			ps.Stale, _ = inputs.Stale(ctx, p)
		}
		if ps.Ready {
			in.ReadyPods++
		}
		in.KratosImages = addDistinct(in.KratosImages, ps.KratosImage)
		in.InjectorVersions = addDistinct(in.InjectorVersions, ps.InjectorVersion)
		in.SpecHashes = addDistinct(in.SpecHashes, ps.SpecHash)
		in.Pods = append(in.Pods, ps)
		// The providers and URL of the newest pod that is not going away: during a rollout,
		// the config being rolled out.
		if p.DeletionTimestamp == nil && (newest == nil || newest.CreationTimestamp.Before(&p.CreationTimestamp)) {
			newest = p
		}
	}
	if newest == nil && len(group.Pods) > 0 {
		newest = &group.Pods[0]
	}
	if newest != nil {
		in.PublicURL, in.Providers = providers(ctx, secrets, ns, newest)
	}
	return in
}

func addDistinct(list []string, v string) []string {
	if v == "" || slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}

// providers returns the public URL of the pod's Kratos and the redirect URI of each of its
// OIDC providers.
func providers(ctx context.Context, secrets *secretReader, ns string, p *corev1.Pod) (string, []ProviderStatus) {
	publicURL, idps := inject.DefaultPublicURL, []string(nil)
	if spec, err := inject.ParseAnnotations(p.Annotations, ""); err == nil {
		publicURL, idps = spec.PublicURL, spec.IDPSecrets
	} else {
		// Not valid for this plugin's version (injected by another): read the two raw.
		if v := strings.TrimSpace(p.Annotations[inject.AnnotationPublicURL]); v != "" {
			publicURL = v
		}
		for _, s := range strings.Split(p.Annotations[inject.AnnotationIDPSecrets], ",") {
			if s = strings.TrimSpace(s); s != "" {
				idps = append(idps, s)
			}
		}
	}
	var out []ProviderStatus
	for _, name := range idps {
		ps := ProviderStatus{Secret: name}
		r := secrets.get(ctx, ns, name)
		switch {
		case r.err == nil:
			ps.ID, ps.Verified = config.ProviderID(r.data), true
			if ps.ID == "" {
				ps.ID, ps.Verified = name, false
				ps.Note = fmt.Sprintf("Secret %s has neither key id nor provider: the pod cannot render", name)
			}
		case apierrors.IsNotFound(r.err):
			ps.ID = name
			ps.Note = fmt.Sprintf("Secret %s not found in namespace %s: the pod cannot render; the Secret name stands in for the provider id", name, ns)
		case apierrors.IsForbidden(r.err):
			ps.ID = name
			ps.Note = fmt.Sprintf("you may not get Secret %s in namespace %s: the Secret name stands in for the provider id (the id is the Secret's key id, else its provider)", name, ns)
		default:
			ps.ID = name
			ps.Note = fmt.Sprintf("cannot read Secret %s: %v; the Secret name stands in for the provider id", name, r.err)
		}
		ps.RedirectURI = config.CallbackURL(publicURL, ps.ID)
		out = append(out, ps)
	}
	return publicURL, out
}

// secretReader reads each Secret once.
type secretReader struct {
	cs    kubernetes.Interface
	cache map[string]secretResult
}

type secretResult struct {
	data map[string][]byte
	err  error
}

func (s *secretReader) get(ctx context.Context, ns, name string) secretResult {
	k := ns + "/" + name
	if r, ok := s.cache[k]; ok {
		return r
	}
	var r secretResult
	sec, err := s.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		r.data = sec.Data
	}
	r.err = err
	s.cache[k] = r
	return r
}

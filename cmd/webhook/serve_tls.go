package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kratos-injector/kratos-injector/internal/selfsigned"
	"github.com/kratos-injector/kratos-injector/internal/version"
)

// podNamespaceEnv is set by the manifests from the downward API (metadata.namespace).
const podNamespaceEnv = "POD_NAMESPACE"

// selfSignedOptions are the flags of --tls-mode=self-signed (internal/selfsigned).
type selfSignedOptions struct {
	kubeconfig         string
	secretName         string
	secretNamespace    string
	webhookConfigName  string
	serviceName        string
	serviceNamespace   string
	caValidity         time.Duration
	servingValidity    time.Duration
	renewBeforePercent int
	checkInterval      time.Duration
	rotationGrace      time.Duration
}

func defaultSelfSignedOptions() selfSignedOptions {
	return selfSignedOptions{
		secretName:         "kratos-injector-tls",
		webhookConfigName:  "kratos-injector",
		serviceName:        "kratos-injector",
		caValidity:         selfsigned.DefaultCAValidity,
		servingValidity:    selfsigned.DefaultServingValidity,
		renewBeforePercent: selfsigned.DefaultRenewBeforePercent,
		checkInterval:      selfsigned.DefaultCheckInterval,
		rotationGrace:      selfsigned.DefaultRotationGrace,
	}
}

func (o *selfSignedOptions) addFlags(fs *pflag.FlagSet) {
	const only = " (--tls-mode=self-signed)"
	fs.StringVar(&o.kubeconfig, "kubeconfig", o.kubeconfig, "kubeconfig to reach the API server; empty: the pod's ServiceAccount"+only)
	fs.StringVar(&o.secretName, "tls-secret-name", o.secretName, "Secret holding the CA and the serving certificate, shared by the replicas"+only)
	fs.StringVar(&o.secretNamespace, "tls-secret-namespace", o.secretNamespace, "namespace of that Secret; empty: $"+podNamespaceEnv+" (the pod's, from the downward API)"+only)
	fs.StringVar(&o.webhookConfigName, "webhook-config-name", o.webhookConfigName, "MutatingWebhookConfiguration whose webhooks' caBundle is kept"+only)
	fs.StringVar(&o.serviceName, "service-name", o.serviceName, "Service in front of the webhook: the certificate is for <name>.<namespace>.svc"+only)
	fs.StringVar(&o.serviceNamespace, "service-namespace", o.serviceNamespace, "namespace of that Service; empty: the Secret's"+only)
	fs.DurationVar(&o.caValidity, "tls-ca-validity", o.caValidity, "lifetime of a new CA"+only)
	fs.DurationVar(&o.servingValidity, "tls-serving-validity", o.servingValidity, "lifetime of a new serving certificate (never beyond its CA's)"+only)
	fs.IntVar(&o.renewBeforePercent, "tls-renew-before-percent", o.renewBeforePercent, "renew a certificate when less than this percentage of its validity remains"+only)
	fs.DurationVar(&o.checkInterval, "tls-check-interval", o.checkInterval, "how often the Secret, the certificate files and the caBundle are checked"+only)
	fs.DurationVar(&o.rotationGrace, "tls-rotation-grace", o.rotationGrace, "how long a new CA is trusted before it signs, and an old one kept after it stopped signing; must exceed --tls-check-interval"+only)
}

// complete fills the namespaces from the environment.
func (o *selfSignedOptions) complete() error {
	if o.secretNamespace == "" {
		o.secretNamespace = os.Getenv(podNamespaceEnv)
	}
	if o.secretNamespace == "" {
		return fmt.Errorf("--tls-secret-namespace is empty and $%s is not set: set either (the manifests set %s from the downward API's metadata.namespace)", podNamespaceEnv, podNamespaceEnv)
	}
	if o.serviceNamespace == "" {
		o.serviceNamespace = o.secretNamespace
	}
	return nil
}

// managerOptions are the selfsigned.Options these flags describe (without the client).
func (o *selfSignedOptions) managerOptions(certDir string, log logr.Logger) selfsigned.Options {
	return selfsigned.Options{
		SecretNamespace: o.secretNamespace, SecretName: o.secretName,
		WebhookConfigName: o.webhookConfigName,
		ServiceName:       o.serviceName, ServiceNamespace: o.serviceNamespace,
		CertDir:    certDir,
		CAValidity: o.caValidity, ServingValidity: o.servingValidity, RenewBeforePercent: o.renewBeforePercent,
		CheckInterval: o.checkInterval, RotationGrace: o.rotationGrace,
		Log: log,
	}
}

// validate checks the flags without a client (the client is built at run time).
func (o *selfSignedOptions) validate(certDir string) error {
	if err := o.complete(); err != nil {
		return err
	}
	if err := o.managerOptions(certDir, logr.Discard()).Validate(); err != nil {
		return fmt.Errorf("--tls-mode self-signed: %w", err)
	}
	return nil
}

// newManager builds the certificate manager with a client from --kubeconfig or the pod's
// ServiceAccount.
func (o *selfSignedOptions) newManager(certDir string, log logr.Logger) (*selfsigned.Manager, error) {
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	mo := o.managerOptions(certDir, log)
	mo.Client = client
	return selfsigned.New(mo)
}

// restConfig: an explicit kubeconfig, else in-cluster, else $KUBECONFIG / ~/.kube/config.
func restConfig(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else if cfg, err = rest.InClusterConfig(); errors.Is(err, rest.ErrNotInCluster) {
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("API server client: %w", err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "kratos-injector-webhook/" + version.Version
	return cfg, nil
}

// newTLSCmd is `webhook tls`, the self-signed mode's operations: `webhook tls renew [--ca]`
// marks the Secret so that the running replicas renew at their next check.
func newTLSCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "tls",
		Short: "Operate the certificate of --tls-mode=self-signed",
		Args:  cobra.NoArgs,
	}
	var kubeconfig, namespace, secret string
	var ca bool
	renew := &cobra.Command{
		Use:   "renew",
		Short: "Ask the running webhook to renew its serving certificate (with --ca: its CA first)",
		Long: `Annotates the Secret (` + selfsigned.AnnotationRenew + `) so that the replicas of
` + "`webhook serve --tls-mode=self-signed`" + ` renew at their next check (--tls-check-interval). A new
serving certificate comes from the current CA: nothing the API server trusts changes. With --ca a
new CA is added to the caBundle first, and signs the next serving certificate after the rotation
grace; the old CA leaves the bundle one grace later. No admission fails meanwhile.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := restConfig(kubeconfig)
			if err != nil {
				return err
			}
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			what := selfsigned.RenewServing
			if ca {
				what = selfsigned.RenewCA
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			if err := selfsigned.RequestRenewal(ctx, client, namespace, secret, what); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "renewal (%s) requested on Secret %s/%s; the webhook acts on it at its next check\n", what, namespace, secret)
			return nil
		},
	}
	d := defaultSelfSignedOptions()
	renew.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	renew.Flags().StringVarP(&namespace, "namespace", "n", "kratos-injector", "the webhook's namespace")
	renew.Flags().StringVar(&secret, "tls-secret-name", d.secretName, "the webhook's --tls-secret-name")
	renew.Flags().BoolVar(&ca, "ca", false, "rotate the CA too")
	root.AddCommand(renew)
	return root
}

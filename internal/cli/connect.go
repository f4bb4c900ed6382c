package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	client "github.com/ory/kratos-client-go"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kratos-injector/kratos-injector/internal/actions"
	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance"
)

// Validate checks the global flags (no network).
func (g *Globals) Validate() error {
	if g.Instance != "" {
		if errs := validation.IsValidLabelValue(g.Instance); len(errs) > 0 {
			return fmt.Errorf("--instance %q: %s", g.Instance, errs[0])
		}
	}
	if g.Selector != "" {
		if _, err := labels.Parse(g.Selector); err != nil {
			return fmt.Errorf("-l %q: %w", g.Selector, err)
		}
	}
	if g.AdminURL != "" {
		u, err := url.Parse(g.AdminURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--admin-url %q: want http(s)://host[:port]", g.AdminURL)
		}
		if g.Instance != "" || g.Selector != "" {
			return errors.New("--admin-url reaches one admin API directly: it does not go with --instance or -l")
		}
	}
	if _, err := g.requestTimeout(); err != nil {
		return err
	}
	if g.AdminTimeout <= 0 {
		return fmt.Errorf("--admin-timeout %s: must be positive", g.AdminTimeout)
	}
	return nil
}

func (g *Globals) requestTimeout() (time.Duration, error) {
	if g.ConfigFlags.Timeout == nil || *g.ConfigFlags.Timeout == "" {
		return 0, nil
	}
	d, err := clientcmd.ParseTimeout(*g.ConfigFlags.Timeout)
	if err != nil {
		return 0, fmt.Errorf("--request-timeout %q: %w", *g.ConfigFlags.Timeout, err)
	}
	return d, nil
}

// kube is a connection to the cluster of the current kubeconfig context.
type kube struct {
	config    *rest.Config
	clientset kubernetes.Interface
	namespace string
}

func (g *Globals) kube() (*kube, error) {
	cfg, err := g.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	ns, _, err := g.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: namespace: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &kube{config: cfg, clientset: cs, namespace: ns}, nil
}

// findInstance finds the instance the global flags select.
func (g *Globals) findInstance(ctx context.Context, k *kube) (*instance.Instance, error) {
	return instance.Find(ctx, k.clientset, instance.Selector{Namespace: k.namespace, Instance: g.Instance, LabelSelector: g.Selector})
}

// admin is an admin API client for the duration of one command: Close releases its connections
// and ends the port-forward, so that nothing of it outlives the command.
type admin struct {
	*client.APIClient
	// loginUI is the instance's login UI, the kratos-injector.io/ui-url annotation of the pod the
	// client reaches; "" when it has none, or with --admin-url (no pod).
	loginUI string
	// target is the plugin's flags that reach the same admin API again, for hints to print:
	// "-n NAMESPACE --instance NAME", or "--admin-url URL".
	target string
	// explain adds what the transport knows to an error of a call.
	explain func(error) error
	close   func()
}

func (a *admin) Close() { a.close() }

// Explain passes Kratos's own errors through and adds to a transport failure, or an answer that
// is not Kratos's, what the port-forward saw or where the admin API is; a request that hit
// --admin-timeout or the response size limit says so. The error is one line: text from the
// admin API in it (identity IDs, messages) cannot add lines of its own.
func (a *admin) Explain(err error) error {
	if err == nil {
		return nil
	}
	ae, isAPIError := errors.AsType[*actions.APIError](err)
	kratosSaid := isAPIError && ae.ContentType == "" // an error answer that is not Kratos's JSON is explained too
	if !kratosSaid && !errors.Is(err, actions.ErrNotFound) &&
		!errors.Is(err, actions.ErrAmbiguous) && !errors.Is(err, actions.ErrConflict) && !errors.Is(err, actions.ErrInvalid) {
		err = a.explain(err)
		if errors.Is(err, actions.ErrTimeout) {
			err = fmt.Errorf("%w; --admin-timeout sets the limit", err)
		}
	}
	return oneLine(err)
}

// oneLineError is an error whose message has its line breaks written as `\n` and `\r`.
type oneLineError struct{ err error }

func (e *oneLineError) Error() string {
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(e.err.Error())
}
func (e *oneLineError) Unwrap() error { return e.err }

func oneLine(err error) error {
	if err == nil || !strings.ContainsAny(err.Error(), "\n\r") {
		return err
	}
	return &oneLineError{err: err}
}

// connectAdmin reaches the admin API of the selected instance: directly with --admin-url,
// else through a port-forward to a Ready pod's admin port, open until Close. Opening the
// port-forward and each request are bounded by --admin-timeout; the Kubernetes API calls by
// kubectl's --request-timeout.
func (g *Globals) connectAdmin(ctx context.Context) (*admin, error) {
	// A transport of its own, whose kept-alive connections Close ends.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	hc := &http.Client{Timeout: g.AdminTimeout, Transport: tr}
	if g.AdminURL != "" {
		c, err := actions.NewClient(g.AdminURL, hc)
		if err != nil {
			return nil, usageError(err)
		}
		return &admin{APIClient: c, target: "--admin-url " + g.AdminURL, close: tr.CloseIdleConnections, explain: func(err error) error {
			return fmt.Errorf("%w (admin API at %s)", err, g.AdminURL)
		}}, nil
	}
	k, err := g.kube()
	if err != nil {
		return nil, err
	}
	in, err := g.findInstance(ctx, k)
	if err != nil {
		return nil, err
	}
	pod, err := in.ReadyPod()
	if err != nil {
		return nil, err
	}
	fw, err := instance.PortForwardWithin(ctx, k.config, k.clientset, pod, config.AdminPort, g.AdminTimeout)
	if errors.Is(err, instance.ErrTimeout) {
		return nil, fmt.Errorf("%w; --admin-timeout sets the limit", err)
	}
	if err != nil {
		return nil, err
	}
	c, err := actions.NewClient(fw.URL, hc)
	if err != nil {
		fw.Close()
		return nil, err
	}
	return &admin{APIClient: c, loginUI: strings.TrimSpace(pod.Annotations[inject.AnnotationUIURL]), target: "-n " + in.Namespace + " --instance " + in.Name,
		close: func() { tr.CloseIdleConnections(); fw.Close() }, explain: fw.Explain}, nil
}

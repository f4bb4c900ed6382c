package testbed

import (
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WebhookOptions describes a MutatingWebhookConfiguration for pods.
type WebhookOptions struct {
	Name string // configuration and webhook name (a DNS name with at least three segments is used for the webhook)
	// Exactly one of URL or Service.
	URL     string
	Service *admissionregistrationv1.ServiceReference
	// CABundle is the PEM CA the API server trusts for the webhook.
	CABundle []byte
	// ObjectSelector selects the pods sent to the webhook (nil: all).
	ObjectSelector *metav1.LabelSelector
	// NamespaceSelector (nil: all namespaces).
	NamespaceSelector *metav1.LabelSelector
	// FailurePolicy defaults to Fail.
	FailurePolicy  admissionregistrationv1.FailurePolicyType
	TimeoutSeconds int32
}

// RegisterWebhook creates a MutatingWebhookConfiguration calling a webhook for pod CREATE, with
// sideEffects None and reinvocationPolicy IfNeeded (as the product's manifests do). The API server
// picks configurations up asynchronously: callers wait for the first call before relying on it.
func (cp *ControlPlane) RegisterWebhook(ctx context.Context, o WebhookOptions) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	fp := o.FailurePolicy
	if fp == "" {
		fp = admissionregistrationv1.Fail
	}
	timeout := o.TimeoutSeconds
	if timeout == 0 {
		timeout = 10
	}
	none := admissionregistrationv1.SideEffectClassNone
	reinvoke := admissionregistrationv1.IfNeededReinvocationPolicy
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: o.Name + ".kratos-injector.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				CABundle: o.CABundle,
				Service:  o.Service,
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
				},
			}},
			FailurePolicy:           &fp,
			SideEffects:             &none,
			ReinvocationPolicy:      &reinvoke,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			ObjectSelector:          o.ObjectSelector,
			NamespaceSelector:       o.NamespaceSelector,
		}},
	}
	if o.URL != "" {
		u := o.URL
		cfg.Webhooks[0].ClientConfig.URL = &u
	}
	if (o.URL == "") == (o.Service == nil) {
		return nil, fmt.Errorf("webhook %s: set exactly one of URL and Service", o.Name)
	}
	return cp.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{})
}

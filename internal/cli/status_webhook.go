package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sort"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Names by which status recognises the injector's webhook registration: the configuration the
// manifests install, or any configuration with a webhook under the injector's domain.
const (
	webhookConfigName   = "kratos-injector"
	webhookDomainSuffix = "kratos-injector.io"
)

// webhookStatus finds the injector's MutatingWebhookConfigurations and checks their CA bundles.
func webhookStatus(ctx context.Context, cs kubernetes.Interface, now time.Time) WebhookStatus {
	list, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsForbidden(err):
		return WebhookStatus{Message: `not checked: you may not list mutatingwebhookconfigurations (cluster-wide, group admissionregistration.k8s.io)`}
	case err != nil:
		return WebhookStatus{Message: fmt.Sprintf("not checked: list mutatingwebhookconfigurations: %v", err)}
	}
	st := WebhookStatus{Checked: true, Configurations: []WebhookConfig{}}
	for i := range list.Items {
		if c, ok := checkWebhookConfig(&list.Items[i], now); ok {
			st.Configurations = append(st.Configurations, c)
		}
	}
	sort.Slice(st.Configurations, func(a, b int) bool { return st.Configurations[a].Name < st.Configurations[b].Name })
	if len(st.Configurations) == 0 {
		st.Message = fmt.Sprintf("no MutatingWebhookConfiguration %s (nor any webhook *.%s): labelled pods are created without Kratos; install the injector (README: Install in a real cluster)",
			webhookConfigName, webhookDomainSuffix)
	}
	return st
}

// checkWebhookConfig reports on cfg when it is the injector's: its CA is valid when every
// webhook of the injector in it has a CA bundle of parseable certificates, all valid now.
func checkWebhookConfig(cfg *admissionregistrationv1.MutatingWebhookConfiguration, now time.Time) (WebhookConfig, bool) {
	var hooks []*admissionregistrationv1.MutatingWebhook
	for i := range cfg.Webhooks {
		w := &cfg.Webhooks[i]
		if cfg.Name == webhookConfigName || w.Name == webhookDomainSuffix || strings.HasSuffix(w.Name, "."+webhookDomainSuffix) {
			hooks = append(hooks, w)
		}
	}
	if len(hooks) == 0 && cfg.Name != webhookConfigName {
		return WebhookConfig{}, false
	}
	out := WebhookConfig{Name: cfg.Name, Webhooks: []string{}, CAValid: true}
	var problems []string
	if len(hooks) == 0 {
		out.CAValid = false
		problems = append(problems, "the configuration has no webhook")
	}
	for _, w := range hooks {
		out.Webhooks = append(out.Webhooks, w.Name)
		expires, problem := checkCABundle(w.ClientConfig.CABundle, now)
		if problem != "" {
			out.CAValid = false
			if len(hooks) > 1 {
				problem = w.Name + ": " + problem
			}
			problems = append(problems, problem)
		}
		if !expires.IsZero() && (out.CAExpires == nil || expires.Before(out.CAExpires.Time)) {
			out.CAExpires = &metav1.Time{Time: expires}
		}
	}
	out.Problem = strings.Join(problems, "; ")
	return out, true
}

// checkCABundle parses a PEM CA bundle; it returns when it stops being valid (the latest
// expiry of its certificates valid at now) or what is wrong with it.
func checkCABundle(bundle []byte, now time.Time) (time.Time, string) {
	if len(strings.TrimSpace(string(bundle))) == 0 {
		return time.Time{}, "caBundle is empty: the API server cannot verify the webhook (cert-manager's CA injector, or the injector's self-signed mode, fills it)"
	}
	var certs []*x509.Certificate
	rest := bundle
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return time.Time{}, fmt.Sprintf("caBundle holds a certificate that does not parse: %v", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return time.Time{}, "caBundle holds no PEM certificate"
	}
	// A bundle may hold several CAs (during a rotation): it works while one of them is valid.
	var expires time.Time
	var problems []string
	for _, c := range certs {
		switch {
		case now.After(c.NotAfter):
			problems = append(problems, fmt.Sprintf("CA %q expired on %s", c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339)))
		case now.Before(c.NotBefore):
			problems = append(problems, fmt.Sprintf("CA %q is not valid before %s", c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339)))
		case c.NotAfter.After(expires):
			expires = c.NotAfter
		}
	}
	if !expires.IsZero() {
		return expires, ""
	}
	return time.Time{}, strings.Join(problems, "; ")
}

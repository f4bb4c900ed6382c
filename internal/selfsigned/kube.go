// Kubernetes I/O: reading, creating and updating the Secret with optimistic concurrency, patching
// the caBundle of the MutatingWebhookConfiguration, and the renewal request of `webhook tls renew`.

package selfsigned

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// AnnotationRenew on the Secret asks the replicas to renew: RenewCA rotates the CA (and then the
// serving certificate, after the rotation grace), any other value renews the serving certificate
// from the current CA. The replica that did it removes the annotation.
const (
	AnnotationRenew = "kratos-injector.io/renew"
	RenewServing    = "serving"
	RenewCA         = "ca"
)

// FieldManager names this code's writes in managedFields.
const FieldManager = "kratos-injector"

// ensureSecret returns the Secret after creating or renewing what needs it.
func (m *Manager) ensureSecret(ctx context.Context) (*corev1.Secret, error) {
	secrets := m.o.Client.CoreV1().Secrets(m.o.SecretNamespace)
	const attempts = 5
	for range attempts {
		sec, err := secrets.Get(ctx, m.o.SecretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			p, err := m.plan(material{}, "", m.o.Now())
			if err != nil {
				return nil, err
			}
			sec = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: m.o.SecretName, Namespace: m.o.SecretNamespace, Labels: map[string]string{
					"app.kubernetes.io/name": "kratos-injector", "app.kubernetes.io/component": "webhook-tls",
					"app.kubernetes.io/managed-by": FieldManager,
				}},
				Type: corev1.SecretTypeTLS,
				Data: p.next.data(),
			}
			created, err := secrets.Create(ctx, sec, metav1.CreateOptions{FieldManager: FieldManager})
			if apierrors.IsAlreadyExists(err) {
				m.log.Info("another replica created the Secret first; using it", "secret", m.o.SecretName)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("create Secret %s/%s: %w", m.o.SecretNamespace, m.o.SecretName, err)
			}
			m.log.Info("created the CA and serving certificate", "secret", m.o.SecretName, "dnsNames", m.o.DNSNames())
			return created, nil
		}
		if err != nil {
			return nil, fmt.Errorf("get Secret %s/%s: %w", m.o.SecretNamespace, m.o.SecretName, err)
		}
		p, err := m.plan(parseMaterial(sec.Data), sec.Annotations[AnnotationRenew], m.o.Now())
		if err != nil {
			return nil, err
		}
		if len(p.changes) == 0 {
			return sec, nil
		}
		upd := sec.DeepCopy()
		upd.Data = p.next.data()
		if p.clearRenew {
			delete(upd.Annotations, AnnotationRenew)
		}
		updated, err := secrets.Update(ctx, upd, metav1.UpdateOptions{FieldManager: FieldManager})
		if apierrors.IsConflict(err) {
			m.log.Info("the Secret changed meanwhile (another replica); starting over", "secret", m.o.SecretName)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update Secret %s/%s: %w", m.o.SecretNamespace, m.o.SecretName, err)
		}
		m.log.Info("updated the certificates", "secret", m.o.SecretName, "changes", p.changes)
		return updated, nil
	}
	return nil, fmt.Errorf("Secret %s/%s kept changing under %d attempts", m.o.SecretNamespace, m.o.SecretName, attempts)
}

// patchCABundle sets caBundle on every webhook of the configuration that lacks the bundle, with a
// JSON patch that first tests each webhook's name at its index (a configuration edited meanwhile
// fails the patch instead of getting a bundle in the wrong place; the next check retries).
func (m *Manager) patchCABundle(ctx context.Context, bundle []byte) error {
	mwcs := m.o.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cfg, err := mwcs.Get(ctx, m.o.WebhookConfigName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get MutatingWebhookConfiguration %s (its caBundle must trust the CA): %w", m.o.WebhookConfigName, err)
	}
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	var ops []op
	var names []string
	for i, w := range cfg.Webhooks {
		if bytes.Equal(w.ClientConfig.CABundle, bundle) {
			continue
		}
		ops = append(ops,
			op{"test", fmt.Sprintf("/webhooks/%d/name", i), w.Name},
			op{"add", fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", i), bundle}) // []byte: base64, as the API wants
		names = append(names, w.Name)
	}
	if len(ops) == 0 {
		return nil
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	if _, err := mwcs.Patch(ctx, m.o.WebhookConfigName, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("patch the caBundle of MutatingWebhookConfiguration %s: %w", m.o.WebhookConfigName, err)
	}
	m.log.Info("patched caBundle", "mutatingWebhookConfiguration", m.o.WebhookConfigName, "webhooks", names)
	return nil
}

// RequestRenewal annotates the Secret so that the replicas renew at their next check: what is
// RenewServing (a new serving certificate from the current CA) or RenewCA (a new CA, then a
// serving certificate from it after the rotation grace).
func RequestRenewal(ctx context.Context, c kubernetes.Interface, namespace, name, what string) error {
	if what != RenewServing && what != RenewCA {
		return fmt.Errorf("renew %q: want %q or %q", what, RenewServing, RenewCA)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationRenew: what}}})
	_, err := c.CoreV1().Secrets(namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("Secret %s/%s not found: is the webhook running with --tls-mode=self-signed?", namespace, name)
	}
	return err
}

// Package selfimage finds the image the webhook runs from, so that the injected kratos-config init
// container (`webhook render`) always runs the same image as the webhook: whichever way the image
// was set (Helm values, kustomize `images:` or `kustomize edit set image`, a mirror), the pod's
// own spec says it. Neither the downward API nor kustomize can copy a container's image into an
// env var reliably (a user's overlay runs its `images:` after the base's replacements), so the
// webhook reads its pod through the API at start (RBAC: get pods in its namespace).
//
// It also holds `webhook uninstall`'s one step (DeleteWebhookConfiguration).
package selfimage

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Env vars the manifests set from the downward API (metadata.name, metadata.namespace).
const (
	PodNameEnv      = "POD_NAME"
	PodNamespaceEnv = "POD_NAMESPACE"
)

// Container is the webhook's container name in the manifests and the chart.
const Container = "webhook"

// OwnImage returns the image of container in pod namespace/name (the only container when the pod
// has one). Transient API errors are retried until ctx ends; a pod without that container is an
// error at once.
func OwnImage(ctx context.Context, client kubernetes.Interface, namespace, name, container string) (string, error) {
	var image string
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		pod, err := client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
				return false, err // RBAC or the downward API is wrong: retrying will not help
			}
			lastErr = err
			return false, nil
		}
		for _, c := range pod.Spec.Containers {
			if c.Name == container || len(pod.Spec.Containers) == 1 {
				image = c.Image
				return true, nil
			}
		}
		return false, fmt.Errorf("pod %s/%s has no container %q", namespace, name, container)
	})
	if err != nil {
		if lastErr != nil && ctx.Err() != nil {
			err = lastErr
		}
		return "", fmt.Errorf("read the webhook's own pod %s/%s for its image (set --injector-image to skip): %w", namespace, name, err)
	}
	return image, nil
}

// DeleteWebhookConfiguration deletes the MutatingWebhookConfiguration name (gone already is
// fine). With failurePolicy Fail, it must go before the webhook's Service and pods do, or
// labelled pods cannot be created in between: `helm uninstall` runs this as a pre-delete hook.
func DeleteWebhookConfiguration(ctx context.Context, client kubernetes.Interface, name string) (bool, error) {
	err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("delete mutatingwebhookconfiguration %s: %w", name, err)
	}
	return true, nil
}

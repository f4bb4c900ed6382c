// Package manifests holds the kustomize manifests: base (the webhook's Deployment, Service,
// ServiceAccount, PodDisruptionBudget and MutatingWebhookConfiguration) and the cert-manager and
// self-signed overlays. It has no code; its tests render every overlay (with kustomize's own
// library, as `kubectl apply -k` does) and decode each object strictly into its Go API type —
// Kubernetes' and cert-manager's v1 — so an unknown or misspelt field fails here, then check what
// the README and docs/architecture.md promise of them. The e2e suite installs the overlays on the
// test bed (test/e2e/install_test.go).
package manifests

// Package manifests holds the kustomize manifests, one directory per TLS mode (cert-manager,
// self-signed), generated from the Helm chart charts/kratos-injector (make manifests). It has no
// code; its tests render each directory (with kustomize's own library, as `kubectl apply -k`
// does) and decode each object strictly into its Go API type — Kubernetes' and cert-manager's v1
// — so an unknown or misspelt field fails here, then check what the README and
// docs/architecture.md promise of them. The e2e suite installs them on the test bed
// (test/e2e/install_test.go) and the chart with Helm (test/e2e/helm_test.go).
package manifests

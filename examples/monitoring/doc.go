// Package monitoring holds the Prometheus Operator examples (a PodMonitor for the injected
// Kratos pods, a ServiceMonitor and a Service for the webhook's own metrics). It has no code; its
// tests install the prometheus-operator CRDs on a real kube-apiserver (internal/testbed) and
// apply each example server-side with strict field validation, so a misspelt or misplaced field
// fails here rather than in a user's cluster.
package monitoring

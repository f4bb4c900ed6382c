// Package ingress holds the examples that put an injected Kratos's public API behind a reverse
// proxy: a Service for the injected port kratos-public, Ingresses for ingress-nginx and Traefik,
// and Gateway API routes, each at the root of a host and under a path prefix. It has no code; its
// tests install the Gateway API CRDs on a real kube-apiserver (internal/testbed) and apply each
// example server-side with strict field validation, check that the files agree with each other and
// with examples/deployment.yaml, and send requests through the bed's edge (Debian's nginx,
// configured from the shipped Ingress files) to a local upstream found through the Service's
// EndpointSlice, and to a real Kratos.
package ingress

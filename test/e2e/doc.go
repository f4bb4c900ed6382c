// Package e2e holds the end-to-end tests (`make e2e`). They run against real components started
// by package testbed (internal/testbed): a control plane with controllers, kwok nodes, a real
// node (kubelet, containerd, runc) on which injected pods run, PostgreSQL, Mailpit and Ory
// Kratos, with the built webhook and plugin. Nothing here skips: a missing component is a
// failure that says how to build it (`make tools`). The package has no code outside its tests.
package e2e

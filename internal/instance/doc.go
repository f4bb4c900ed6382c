// Package instance is the plugin's view of an injected Kratos instance: the pods that share a
// kratos-injector.io/instance label value, what is wrong with each of them, and the way in
// through the Kubernetes API server (a port-forward to the pod's admin port, an exec into its
// Kratos container). Kubernetes RBAC on pods/portforward and pods/exec is thus the only door to
// the admin API. `kubectl kratos status`, `migrate` and the identity verbs all select, judge and
// reach pods through this package, so each of those decisions has one home.
package instance

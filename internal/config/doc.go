// Package config is the rendering core: the Spec of one Kratos instance and the Kratos
// configuration rendered from it.
//
// A Spec is the validated, non-secret description of an instance (inject.ParseAnnotations makes
// it from a pod's annotations); it names the Secrets and ConfigMaps it reads but never holds a
// value from them. Render reads those objects as the kubelet mounts them (one file per key under
// the input dir), parses the Secret formats (database, SMTP, OIDC providers, Kratos secrets,
// identity schemas, the config overlay), and returns kratos.yaml with the schema and claims-mapper
// files it refers to; `webhook render`, the injected kratos-config init container, writes them.
// A problem is one line naming the Secret or ConfigMap and the key, never a value.
//
// The package knows no Kubernetes API type, so rendering and its golden tests need no cluster.
// See docs/architecture.md, "Rendering in the pod".
package config

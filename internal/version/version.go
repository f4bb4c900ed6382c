// Package version carries the build's version, stamped by the Makefile with -ldflags.
package version

// Version is set at build time: -X github.com/kratos-injector/kratos-injector/internal/version.Version=...
var Version = "dev"

// KratosVersion is the Ory Kratos release this injector renders config for and tests against.
const KratosVersion = "v1.3.1"

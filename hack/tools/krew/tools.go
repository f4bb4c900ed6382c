//go:build tools

// Package tools pins krew's own manifest validator (cmd/validate-krew-manifest, what krew-index's
// CI runs on a plugin manifest), built by hack/tools.sh for `make release` and its test.
package tools

import _ "sigs.k8s.io/krew/cmd/validate-krew-manifest"

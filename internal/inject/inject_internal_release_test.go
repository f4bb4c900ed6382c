package inject

import (
	"strings"
	"testing"
)

// TestDefaultInjectorImageDigest: a release build (digest stamped) defaults to the pinned
// reference the release's install YAML uses, and it is a valid image reference.
func TestDefaultInjectorImageDigest(t *testing.T) {
	d := "sha256:" + strings.Repeat("0f", 32)
	got := defaultInjectorImage("v1.2.3", d)
	if got != InjectorImageRepository+":v1.2.3@"+d {
		t.Errorf("got %q", got)
	}
	if err := ValidImage(got); err != nil {
		t.Error(err)
	}
	if got := defaultInjectorImage("v1.2.3", ""); got != InjectorImageRepository+":v1.2.3" {
		t.Errorf("no digest: %q", got)
	}
}

package testbed

import (
	"fmt"
	"os"
	"path/filepath"
)

// GatewayAPICRD returns the CustomResourceDefinition of a gateway.networking.k8s.io resource (by
// plural: "httproutes", "gateways", "gatewayclasses", "referencegrants", ...) of the Gateway API
// release's standard channel, as hack/tools.sh copied it from the sigs.k8s.io/gateway-api module
// (the gatewayapicrds component, unmodified).
func GatewayAPICRD(plural string) ([]byte, error) {
	dir, err := Tool("gatewayapicrds")
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "gateway.networking.k8s.io_"+plural+".yaml"))
	if err != nil {
		return nil, fmt.Errorf("Gateway API CRD %s: %w (copy them with `make tools`)", plural, err)
	}
	return b, nil
}

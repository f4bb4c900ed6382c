package testbed

import (
	"fmt"
	"os"
	"path/filepath"
)

// PrometheusOperatorCRD returns the CustomResourceDefinition of a monitoring.coreos.com/v1
// resource (by plural: "podmonitors", "servicemonitors", "prometheuses", ...) as hack/tools.sh
// generated it from the prometheus-operator API module (the promcrds component: descriptions
// dropped, schema intact).
func PrometheusOperatorCRD(plural string) ([]byte, error) {
	dir, err := Tool("promcrds")
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dir, "monitoring.coreos.com_"+plural+".yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("prometheus-operator CRD %s: %w (regenerate with `make tools`)", plural, err)
	}
	return b, nil
}

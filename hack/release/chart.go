package main

import (
	"fmt"
	"regexp"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
)

// imageDigestLine is the image.digest line of values.yaml (the first digest key, under image:).
var imageDigestLine = regexp.MustCompile(`(?m)^(image:\n(?:  .*\n|\s*#.*\n)*?  digest: )""`)

// pinChartValues sets image.digest in the chart's values and in its values.yaml (which the
// package keeps as written, comments included).
func pinChartValues(c *chart.Chart, digest string) error {
	img, ok := c.Values["image"].(map[string]any)
	if !ok {
		return fmt.Errorf("chart values have no image map")
	}
	img["digest"] = digest
	for _, f := range c.Raw {
		if f.Name != chartutil.ValuesfileName {
			continue
		}
		if !imageDigestLine.Match(f.Data) {
			return fmt.Errorf("values.yaml: no `digest: \"\"` under image: to pin")
		}
		f.Data = imageDigestLine.ReplaceAll(f.Data, []byte(`${1}"`+digest+`"`))
	}
	return nil
}

// saveChart packages the chart (`helm package`) into dir and returns the file name.
func saveChart(c *chart.Chart, dir string) (string, error) {
	p, err := chartutil.Save(c, dir)
	if err != nil {
		return "", fmt.Errorf("package chart: %w", err)
	}
	return p[len(dir)+1:], nil
}

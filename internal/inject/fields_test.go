package inject

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kratos-injector/kratos-injector/internal/config"
)

// TestEveryFieldHasASetting: each config.Spec field is set by exactly one setting, so that
// every problem Spec.Validate finds is reported under the annotation the user wrote.
func TestEveryFieldHasASetting(t *testing.T) {
	owner := map[string]string{}
	for _, d := range Annotations {
		if (d.parse != nil) != (len(d.fields) > 0) {
			t.Errorf("%s: a setting needs both fields and parse", d.Name)
		}
		for _, f := range d.fields {
			if o, dup := owner[f]; dup {
				t.Errorf("Spec field %s set by %s and %s", f, o, d.Name)
			}
			owner[f] = d.Name
		}
	}
	typ := reflect.TypeFor[config.Spec]()
	fields := map[string]bool{}
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		fields[name] = true
		if _, ok := owner[name]; !ok {
			t.Errorf("Spec field %s (%s) has no setting in Annotations", name, typ.Field(i).Name)
		}
	}
	for f, d := range owner {
		if !fields[f] {
			t.Errorf("%s names %s, which is not a Spec field", d, f)
		}
	}
}

// TestSettingSetsItsFields: a setting's example sets the fields it declares (and no others),
// so fields cannot drift from what parse does.
func TestSettingSetsItsFields(t *testing.T) {
	zero := specFields(t, &config.Spec{})
	for _, d := range Annotations {
		if d.parse == nil {
			continue
		}
		var s config.Spec
		if err := d.parse(&s, d.Example); err != nil {
			t.Errorf("%s: example %q: %v", d.Name, d.Example, err)
			continue
		}
		var changed []string
		for f, v := range specFields(t, &s) {
			if !reflect.DeepEqual(v, zero[f]) {
				changed = append(changed, f)
			}
		}
		slices.Sort(changed)
		want := slices.Sorted(slices.Values(d.fields))
		if !slices.Equal(changed, want) {
			t.Errorf("%s: example %q sets %q, fields name %q", d.Name, d.Example, changed, want)
		}
	}
}

func specFields(t *testing.T, s *config.Spec) map[string]any {
	t.Helper()
	out := map[string]any{}
	v := reflect.ValueOf(s).Elem()
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		out[name] = v.Field(i).Interface()
	}
	return out
}

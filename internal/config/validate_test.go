package config

import (
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// jsonName is the JSON name of a Spec field, the name FieldError uses.
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

func fieldErrors(t *testing.T, err error) []FieldError {
	t.Helper()
	if err == nil {
		return nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("not a *ValidationError: %T %v", err, err)
	}
	return ve.Errors
}

// TestValidateEveryField: every Spec field has a rule, and breaking it yields a FieldError
// naming that field (by its JSON name, which the annotation parser maps back to an annotation).
// A new field fails here until it has a bad value below, that is, until its rule is written.
func TestValidateEveryField(t *testing.T) {
	bad := map[string]func(*Spec){
		"database":          func(s *Spec) { s.Database = "mysql" },
		"databaseSecret":    func(s *Spec) { s.DatabaseSecret = "Bad_Name" },
		"smtpSecret":        func(s *Spec) { s.SMTPSecret = "a/b" },
		"idpSecrets":        func(s *Spec) { s.IDPSecrets = []string{"gh", "gh"} },
		"secretsSecret":     func(s *Spec) { s.SecretsSecret = "-x" },
		"identitySchemas":   func(s *Spec) { s.IdentitySchemas = "x..y" },
		"defaultSchema":     func(s *Spec) { s.DefaultSchema = "a b" },
		"configOverlay":     func(s *Spec) { s.ConfigOverlay = "Upper" },
		"publicURL":         func(s *Spec) { s.PublicURL = "/auth" },
		"uiURL":             func(s *Spec) { s.UIURL = "ftp://ui.example.com" },
		"returnURL":         func(s *Spec) { s.ReturnURL = "example.com" },
		"allowedReturnURLs": func(s *Spec) { s.AllowedReturnURLs = []string{"https://ok.example.com", "mailto:x"} },
		"corsOrigins":       func(s *Spec) { s.CORSOrigins = []string{"https://app.example.com/path"} },
		"hydraAdminURL":     func(s *Spec) { s.HydraAdminURL = "http://u:p@hydra:4445" },
		"features":          func(s *Spec) { s.Features = []string{"sso"} },
		"senderName":        func(s *Spec) { s.SenderName = "a\nb" },
		"senderAddress":     func(s *Spec) { s.SenderAddress = "nobody" },
		"migrate":           func(s *Spec) { s.Migrate = "yes" },
		"courier":           func(s *Spec) { s.Courier = "on" },
		"metrics":           func(s *Spec) { s.Metrics = "yes" },
		"sidecar":           func(s *Spec) { s.Sidecar = "Native" },
		"image":             func(s *Spec) { s.Image = "Oryd/Kratos:latest" },
		"logLevel":          func(s *Spec) { s.LogLevel = "warn" },
		"cpu":               func(s *Spec) { s.CPU = "lots" },
		"memory":            func(s *Spec) { s.Memory = "0" },
		"admin":             func(s *Spec) { s.Admin = "public" },
	}
	if err := validFixture().spec.Validate(); err != nil {
		t.Fatalf("the valid fixture is refused: %v", err)
	}
	typ := reflect.TypeFor[Spec]()
	for i := range typ.NumField() {
		field := jsonName(typ.Field(i))
		t.Run(field, func(t *testing.T) {
			breakIt, ok := bad[field]
			if !ok {
				t.Fatalf("no bad value for Spec.%s: write its rule in Validate and add it here", typ.Field(i).Name)
			}
			s := validFixture().spec
			breakIt(&s)
			errs := fieldErrors(t, s.Validate())
			if len(errs) != 1 || errs[0].Field != field || errs[0].With != "" || errs[0].Msg == "" {
				t.Errorf("want one problem with %s, got %+v", field, errs)
			}
			if strings.ContainsAny(errs[0].Error(), "\r\n") {
				t.Errorf("message is not one line: %q", errs[0].Error())
			}
		})
	}
}

func TestValidateCombinations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Spec)
		want   []FieldError
	}{
		{"postgres without secret", func(s *Spec) { s.DatabaseSecret = "" },
			[]FieldError{{Field: "database", With: "databaseSecret", Msg: "postgres needs kratos-injector.io/database-secret (a Secret with the connection)"}}},
		{"sqlite with secret", func(s *Spec) { s.Database = DatabaseSQLite },
			[]FieldError{{Field: "databaseSecret", With: "database", Msg: "is set but kratos-injector.io/database is sqlite: remove one of them"}}},
		// A field that is wrong on its own is not judged in combination as well.
		{"sqlite with bad secret", func(s *Spec) { s.Database, s.DatabaseSecret = DatabaseSQLite, "Bad_Name" },
			[]FieldError{{Field: "databaseSecret", Msg: `"Bad_Name" is not a valid Secret name`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validFixture().spec
			tc.change(&s)
			got := fieldErrors(t, s.Validate())
			// Msg: the wanted one is a prefix (the object-name rule appends Kubernetes's words).
			prefix := func(a, b FieldError) bool {
				return a.Field == b.Field && a.With == b.With && (strings.HasPrefix(a.Msg, b.Msg) || strings.HasPrefix(b.Msg, a.Msg))
			}
			if !slices.EqualFunc(tc.want, got, prefix) {
				t.Errorf("want %+v\ngot  %+v", tc.want, got)
			}
		})
	}
}

// TestValidateAll: one error lists every broken rule, single fields first in field order.
func TestValidateAll(t *testing.T) {
	s := validFixture().spec
	s.Admin, s.PublicURL, s.Database, s.DatabaseSecret = "public", "", DatabaseSQLite, "db"
	err := s.Validate()
	var got []string
	for _, fe := range fieldErrors(t, err) {
		got = append(got, fe.Field)
	}
	if d := cmp.Diff([]string{"publicURL", "admin", "databaseSecret"}, got); d != "" {
		t.Errorf("fields (-want +got):\n%s", d)
	}
	if !strings.HasPrefix(err.Error(), `publicURL: "" is not an absolute http or https URL; admin: "public" is not one of localhost, pod; `) {
		t.Errorf("message: %s", err)
	}
	if (*Spec)(nil).Validate() == nil {
		t.Error("a nil spec is valid")
	}
}

func TestCanonical(t *testing.T) {
	if got := CanonicalFeatures([]string{"mfa", "sso", "local-idp", "mfa"}); !cmp.Equal(got, []string{"local-idp", "mfa", "sso"}) {
		t.Errorf("CanonicalFeatures = %q", got)
	}
	if got := CanonicalFeatures(nil); got == nil || len(got) != 0 {
		t.Errorf("CanonicalFeatures(nil) = %#v, want empty and not nil", got)
	}
	for in, want := range map[string]string{"0.5": "500m", "256Mi": "256Mi", "-0.5": "-0.5", "lots": "lots"} {
		if got := CanonicalQuantity(in); got != want {
			t.Errorf("CanonicalQuantity(%q) = %q, want %q", in, got, want)
		}
	}
}

// inputKinds are the values of the input tag and the list of Inputs each goes to.
var inputKinds = map[string]int{"secret": 0, "configmap": 1}

// TestInputsListEveryTaggedField sets every field tagged input to names of its own and checks
// that Inputs lists each under its kind: a field Inputs forgets would never be mounted.
func TestInputsListEveryTaggedField(t *testing.T) {
	var s Spec
	want := [2][]string{}
	typ := reflect.TypeFor[Spec]()
	v := reflect.ValueOf(&s).Elem()
	for i := range typ.NumField() {
		f := typ.Field(i)
		kind, tagged := f.Tag.Lookup("input")
		if !tagged {
			continue
		}
		k, ok := inputKinds[kind]
		if !ok {
			t.Errorf("Spec.%s: input tag %q is not secret or configmap", f.Name, kind)
			continue
		}
		name := strings.ToLower(f.Name)
		switch f.Type {
		case reflect.TypeFor[string]():
			v.Field(i).SetString(name)
			want[k] = append(want[k], name)
		case reflect.TypeFor[[]string]():
			names := []string{name + "-1", name + "-2"}
			v.Field(i).Set(reflect.ValueOf(names))
			want[k] = append(want[k], names...)
		default:
			t.Errorf("Spec.%s: input tag on a %s, not a string or []string", f.Name, f.Type)
		}
	}
	secrets, configMaps := s.Inputs()
	for k, got := range [2][]string{secrets, configMaps} {
		slices.Sort(got)
		slices.Sort(want[k])
		if d := cmp.Diff(want[k], got); d != "" {
			t.Errorf("Inputs, %s (-tagged +listed):\n%s", []string{"secrets", "configMaps"}[k], d)
		}
	}
}

// nameSuggestsInput is how a field that names a Secret or ConfigMap is spelt today; it keeps a
// new such field from going without its input tag (and so from Inputs).
var nameSuggestsInput = regexp.MustCompile(`Secrets?$|ConfigMaps?$|Schemas$|Overlay$`)

func TestInputTags(t *testing.T) {
	typ := reflect.TypeFor[Spec]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		_, tagged := f.Tag.Lookup("input")
		isNames := f.Type == reflect.TypeFor[string]() || f.Type == reflect.TypeFor[[]string]()
		if isNames && nameSuggestsInput.MatchString(f.Name) && !tagged {
			t.Errorf("Spec.%s looks like it names a Secret or ConfigMap: tag it input:\"secret\" or input:\"configmap\" and list it in Inputs", f.Name)
		}
		if tagged && !nameSuggestsInput.MatchString(f.Name) {
			t.Errorf("Spec.%s is an input but its name does not say so: extend nameSuggestsInput", f.Name)
		}
	}
}

// TestInputsOrder pins the order and the de-duplication: the order is that of an injected
// pod's volumes.
func TestInputsOrder(t *testing.T) {
	s := Spec{DatabaseSecret: "db", SMTPSecret: "shared", IDPSecrets: []string{"gh", "shared"}, SecretsSecret: "keys",
		IdentitySchemas: "schemas", ConfigOverlay: "overlay"}
	secrets, configMaps := s.Inputs()
	if d := cmp.Diff([]string{"db", "shared", "keys", "gh"}, secrets); d != "" {
		t.Errorf("secrets (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"schemas", "overlay"}, configMaps); d != "" {
		t.Errorf("configMaps (-want +got):\n%s", d)
	}
	if s, c := (&Spec{}).Inputs(); s != nil || c != nil {
		t.Errorf("inputs of an empty spec: %q %q", s, c)
	}
}

// TestRenderReadsOnlyInputs: Render refuses to read an object Inputs does not list (injection
// would not mount it).
func TestRenderReadsOnlyInputs(t *testing.T) {
	f := validFixture()
	r := &renderer{spec: &f.spec, opts: RenderOptions{InputDir: f.write(t)}.withDefaults()}
	r.secrets, r.configMaps = f.spec.Inputs()
	if _, err := r.openSecret("pg"); err != nil {
		t.Errorf("listed Secret: %v", err)
	}
	if _, err := r.openSecret("schemas"); err == nil || !strings.Contains(err.Error(), "Spec.Inputs") {
		t.Errorf("unlisted Secret: %v", err)
	}
	if _, err := r.openConfigMap("pg"); err == nil || !strings.Contains(err.Error(), "Spec.Inputs") {
		t.Errorf("unlisted ConfigMap: %v", err)
	}
}

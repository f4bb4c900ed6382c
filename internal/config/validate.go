package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/api/validate/content"
)

// Every rule a Spec's values follow lives here, once. inject.ParseAnnotations checks each
// annotation against them (naming the annotation that sets the field at fault) and Render
// refuses a spec that breaks one, so what admission accepts and what rendering accepts cannot
// drift apart.

// Accepted values of the Spec's enumerations, in documentation order.
var (
	DatabaseValues = []string{DatabasePostgres, DatabaseSQLite}
	MigrateValues  = []string{MigrateAuto, MigrateManual}
	CourierValues  = []string{CourierWatch, CourierOff}
	MetricsValues  = []string{MetricsOn, MetricsOff}
	SidecarValues  = []string{SidecarNative, SidecarContainer}
	AdminValues    = []string{AdminLocalhost, AdminPod}
)

// LogLevels are Kratos's log levels (logrus names: "warning", not "warn").
var LogLevels = []string{"trace", "debug", "info", "warning", "error", "fatal", "panic"}

// FieldError is one broken rule.
type FieldError struct {
	// Field is the JSON name of the Spec field at fault, e.g. "databaseSecret": callers map it
	// to their own names (the parser to the annotation that sets it).
	Field string
	// With is the other field of a rule that ties two fields together; empty for a rule on
	// Field alone. Such a rule is only judged when both fields are valid on their own.
	With string
	// Msg says what is wrong without naming Field, quoting the value (see Quote). A rule that
	// ties two fields names the other by its annotation, the name users set.
	Msg string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Msg }

// ValidationError is every rule a Spec breaks: the rules on single fields in field order, then
// those that tie two fields.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		msgs[i] = fe.Error()
	}
	return strings.Join(msgs, "; ")
}

// Validate checks every rule of the spec's values and returns nil or a *ValidationError
// listing each broken one. It needs a complete spec: the defaults ParseAnnotations applies are
// not assumed.
func (s *Spec) Validate() error {
	if s == nil {
		return errors.New("no spec")
	}
	var errs []FieldError
	check := func(field, msg string) {
		if msg != "" {
			errs = append(errs, FieldError{Field: field, Msg: msg})
		}
	}
	value := func(field, v string) {
		r := valueRules[field]
		if v != "" || !r.optional {
			check(field, r.rule(v))
		}
	}

	// Field order, so the list reads like the spec.
	value("database", s.Database)
	value("databaseSecret", s.DatabaseSecret)
	value("smtpSecret", s.SMTPSecret)
	check("idpSecrets", secretListProblem(s.IDPSecrets))
	value("secretsSecret", s.SecretsSecret)
	value("identitySchemas", s.IdentitySchemas)
	value("defaultSchema", s.DefaultSchema)
	value("configOverlay", s.ConfigOverlay)
	value("publicURL", s.PublicURL)
	value("uiURL", s.UIURL)
	value("returnURL", s.ReturnURL)
	check("allowedReturnURLs", eachProblem(s.AllowedReturnURLs, func(v string) string { return urlProblem(v, true) }))
	check("corsOrigins", eachProblem(s.CORSOrigins, originProblem))
	value("hydraAdminURL", s.HydraAdminURL)
	check("features", featuresProblem(s.Features))
	value("senderName", s.SenderName)
	value("senderAddress", s.SenderAddress)
	value("migrate", s.Migrate)
	value("courier", s.Courier)
	value("sidecar", s.Sidecar)
	value("image", s.Image)
	value("logLevel", s.LogLevel)
	value("cpu", s.CPU)
	value("memory", s.Memory)
	value("admin", s.Admin)
	value("metrics", s.Metrics)

	// Rules that tie two fields. A field that is already wrong would only add noise.
	bad := map[string]bool{}
	for _, fe := range errs {
		bad[fe.Field] = true
	}
	if !bad["database"] && !bad["databaseSecret"] {
		switch {
		case s.Database == DatabasePostgres && s.DatabaseSecret == "":
			errs = append(errs, FieldError{Field: "database", With: "databaseSecret",
				Msg: "postgres needs kratos-injector.io/database-secret (a Secret with the connection)"})
		case s.Database == DatabaseSQLite && s.DatabaseSecret != "":
			errs = append(errs, FieldError{Field: "databaseSecret", With: "database",
				Msg: "is set but kratos-injector.io/database is sqlite: remove one of them"})
		}
	}
	if len(errs) > 0 {
		return &ValidationError{Errors: errs}
	}
	return nil
}

// valueRule is the rule on one string field of the Spec.
type valueRule struct {
	rule func(string) string
	// optional: the empty string means unset and is not judged.
	optional bool
}

// valueRules are the rules on the Spec's string fields, by JSON name.
var valueRules = map[string]valueRule{
	"database":        {rule: oneOf(DatabaseValues)},
	"databaseSecret":  {rule: objectName("Secret"), optional: true},
	"smtpSecret":      {rule: objectName("Secret"), optional: true},
	"secretsSecret":   {rule: objectName("Secret"), optional: true},
	"identitySchemas": {rule: objectName("ConfigMap"), optional: true},
	"defaultSchema":   {rule: schemaIDProblem},
	"configOverlay":   {rule: objectName("ConfigMap"), optional: true},
	"publicURL":       {rule: plainURLProblem},
	"uiURL":           {rule: plainURLProblem, optional: true},
	"returnURL":       {rule: plainURLProblem, optional: true},
	"hydraAdminURL":   {rule: plainURLProblem, optional: true},
	"senderName": {rule: func(v string) string {
		if !oneLine(v) {
			return Quote(v) + " is not one line"
		}
		return ""
	}},
	"senderAddress": {rule: func(v string) string {
		if !isEmail(v) || !strings.Contains(v, "@") {
			return Quote(v) + " is not an email address"
		}
		return ""
	}},
	"migrate": {rule: oneOf(MigrateValues)},
	"courier": {rule: oneOf(CourierValues)},
	// Injection only: a spec written before the setting existed has none.
	"metrics": {rule: func(v string) string {
		if v == "" {
			return ""
		}
		return oneOf(MetricsValues)(v)
	}},
	"sidecar": {rule: oneOf(SidecarValues)},
	"image": {rule: func(v string) string {
		if err := ValidImage(v); err != nil {
			return err.Error()
		}
		return ""
	}},
	"logLevel": {rule: oneOf(LogLevels)},
	"cpu":      {rule: quantityProblem, optional: true},
	"memory":   {rule: quantityProblem, optional: true},
	"admin":    {rule: oneOf(AdminValues)},
}

// ValueProblem is what is wrong with v as the value of the Spec's string field (JSON name),
// judged even where an empty value would mean unset: an annotation that is present but empty
// is not unset. It is "" for a good value and for a field without a rule of its own (a list,
// or an unknown name).
func ValueProblem(field, v string) string {
	if r, ok := valueRules[field]; ok {
		return r.rule(v)
	}
	return ""
}

// Quote shows a user value in a message: with the credentials a URL in it may carry masked
// (RedactURL; denials are logged and repeated in events), and bounded so a huge value cannot
// bloat a denial or a termination message. Masking comes first: a cut could hide the '@'.
func Quote(v string) string {
	const max = 80
	v = RedactURL(v)
	if len(v) > max {
		return strconv.Quote(v[:max]) + "..."
	}
	return strconv.Quote(v)
}

// redacted replaces the password, or a user name without one, of a URL shown in a message.
const redacted = "xxxxx"

// RedactURL masks the userinfo of a URL, as url.URL.Redacted does (user:xxxxx@host), and also
// a lone user name (often a token: xxxxx@host). It must hold for broken URLs too, since those
// are the ones messages quote: when v does not parse, or parses without userinfo but holds a
// "user:pass@" that a reserved character in the password split off (https://u:12/pw@host parses
// as host u, port 12), everything between "://" (or the start) and the last '@' is masked. A
// value without '@' is returned as is.
func RedactURL(v string) string {
	at := strings.LastIndex(v, "@")
	if at < 0 {
		return v
	}
	u, err := url.Parse(v)
	if err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
		u.User = url.User(redacted)
		return u.String()
	}
	start, scheme := 0, false
	if i := strings.Index(v, "://"); i >= 0 && i < at {
		start, scheme = i+len("://"), true
	}
	// A value that parses without userinfo has its '@' in the path or query: mask only what
	// looks like user:password (an e-mail address or https://host/@me stays readable).
	if (err != nil && scheme) || strings.Contains(v[start:at], ":") {
		return v[:start] + redacted + v[at:]
	}
	return v
}

func oneOf(values []string) func(string) string {
	return func(v string) string {
		if slices.Contains(values, v) {
			return ""
		}
		return fmt.Sprintf("%s is not one of %s", Quote(v), strings.Join(values, ", "))
	}
}

// eachProblem applies rule to every item and joins the problems, so one message lists every
// bad item of a list.
func eachProblem(items []string, rule func(string) string) string {
	var msgs []string
	for _, v := range items {
		if msg := rule(v); msg != "" {
			msgs = append(msgs, msg)
		}
	}
	return strings.Join(msgs, ", ")
}

// objectName: the Secrets and ConfigMaps a spec names are Kubernetes objects (and directory
// names under the input dir).
func objectName(kind string) func(string) string {
	return func(v string) string { return objectNameProblem(kind, v) }
}

func objectNameProblem(kind, v string) string {
	if v == "" {
		return "empty " + kind + " name"
	}
	if errs := content.IsDNS1123Subdomain(v); len(errs) > 0 {
		return fmt.Sprintf("%s is not a valid %s name: %s", Quote(v), kind, errs[0])
	}
	return ""
}

// secretListProblem: each external IdP is one Secret, named once (two providers from one
// Secret would clash on their id).
func secretListProblem(names []string) string {
	var msgs []string
	for i, n := range names {
		if msg := objectNameProblem("Secret", n); msg != "" {
			msgs = append(msgs, msg)
		} else if slices.Contains(names[:i], n) {
			msgs = append(msgs, fmt.Sprintf("Secret %s is listed twice", Quote(n)))
		}
	}
	return strings.Join(msgs, ", ")
}

// schemaIDPattern keeps ids usable as ConfigMap key stems (<id>.json), in URLs and as file
// names: bounded, so schemas/<id>.schema.json stays within a file name's 255 bytes.
var schemaIDPattern = regexp.MustCompile(`^[A-Za-z0-9]([-._A-Za-z0-9]{0,200}[A-Za-z0-9])?$`)

func schemaIDProblem(v string) string {
	if schemaIDPattern.MatchString(v) {
		return ""
	}
	return fmt.Sprintf("%s is not a valid schema id (letters, digits, '-', '.', '_')", Quote(v))
}

// urlProblem accepts absolute http(s) URLs without credentials: annotations are not secret
// (Kratos's oauth2_provider.url could take them, but they would sit in the pod spec). Its
// messages quote the URL with Quote, which masks the credentials. wildcard allows a leading
// "*." in the host, as Kratos does for allow-lists and CORS.
func plainURLProblem(v string) string { return urlProblem(v, false) }

func urlProblem(v string, wildcard bool) string {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return Quote(v) + " is not an absolute http or https URL"
	}
	if u.User != nil {
		return Quote(v) + " carries credentials: annotations are not secret"
	}
	host := u.Hostname()
	if wildcard {
		host = strings.TrimPrefix(host, "*.")
	}
	if host == "" || strings.ContainsAny(host, "*") {
		return Quote(v) + " has an invalid host"
	}
	return ""
}

// originProblem accepts "*" or an http(s) origin, whose host may start with "*.".
func originProblem(v string) string {
	if v == "*" {
		return ""
	}
	if msg := urlProblem(v, true); msg != "" {
		return msg
	}
	if u, _ := url.Parse(v); (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return Quote(v) + " is not an origin (scheme://host[:port])"
	}
	return ""
}

func featuresProblem(features []string) string {
	var unknown []string
	for _, f := range features {
		if !slices.Contains(AllFeatures, f) {
			unknown = append(unknown, Quote(f))
		}
	}
	if len(unknown) == 0 {
		return ""
	}
	return fmt.Sprintf("unknown feature %s (known: %s)", strings.Join(unknown, ", "), strings.Join(AllFeatures, ", "))
}

// CanonicalFeatures is the Spec's form of a feature list, so the spec (and its hash) do not
// depend on how the user wrote it: the known features in documentation order, once each, then
// the unknown ones as given, for Validate to report. It is never nil: an empty list turns every
// feature off, where a nil one would read as unset.
func CanonicalFeatures(list []string) []string {
	out := []string{}
	for _, f := range AllFeatures {
		if slices.Contains(list, f) {
			out = append(out, f)
		}
	}
	for _, f := range list {
		if !slices.Contains(AllFeatures, f) {
			out = append(out, f)
		}
	}
	return out
}

func quantityProblem(v string) string {
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return Quote(v) + " is not a quantity (e.g. 250m, 256Mi)"
	}
	if q.Sign() <= 0 {
		return Quote(v) + " must be positive"
	}
	return ""
}

// CanonicalQuantity is the Spec's form of a CPU or memory quantity (0.5 becomes 500m), so the
// spec's hash does not depend on the spelling. A value Validate refuses is returned as given,
// so that its message quotes what the user wrote.
func CanonicalQuantity(v string) string {
	if quantityProblem(v) != "" {
		return v
	}
	q := resource.MustParse(v)
	return q.String()
}

// imageRef is the shape of an OCI image reference: [host[:port]/]path[:tag][@digest].
var imageRef = regexp.MustCompile(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?` +
	`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` +
	`(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`)

// ValidImage checks the shape of an image reference: the Spec's image and the injector's image
// flags follow the same rule.
func ValidImage(ref string) error {
	if len(ref) > 512 || !imageRef.MatchString(ref) {
		return fmt.Errorf("%s is not an image reference", Quote(ref))
	}
	return nil
}

package inject

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/api/validate/content"

	"github.com/kratos-injector/kratos-injector/internal/config"
)

// Problem is one thing wrong with a pod.
type Problem struct {
	// Field is the annotation or label at fault (kratos-injector.io/...), or the pod field
	// that clashes with the injection (spec.containers[kratos], spec.hostNetwork, ...).
	Field   string
	Message string
}

func (p Problem) String() string { return p.Field + ": " + p.Message }

// InvalidError lists every problem found, so one denial tells the user everything to fix.
type InvalidError struct {
	Problems []Problem
}

// AnnotationProblems reports whether some problem is with a setting (rather than a clash).
func (e *InvalidError) AnnotationProblems() bool {
	for _, p := range e.Problems {
		if strings.HasPrefix(p.Field, Prefix) {
			return true
		}
	}
	return false
}

func (e *InvalidError) Error() string {
	var b strings.Builder
	if len(e.Problems) == 1 {
		b.WriteString("cannot inject Kratos: ")
	} else {
		fmt.Fprintf(&b, "cannot inject Kratos, %d problems: ", len(e.Problems))
	}
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// ParseAnnotations turns a pod's annotations into a validated Spec, applying the defaults of
// DESIGN §3. kratosImage is the default Kratos image (the webhook's --kratos-image). On bad
// input it returns an *InvalidError naming every faulty annotation, in a stable order.
func ParseAnnotations(annotations map[string]string, kratosImage string) (*config.Spec, error) {
	if kratosImage == "" {
		kratosImage = DefaultKratosImage
	}
	s := &config.Spec{
		DefaultSchema: DefaultSchema,
		PublicURL:     DefaultPublicURL,
		Features:      slices.Clone(DefaultFeatures),
		SenderName:    DefaultSenderName,
		SenderAddress: DefaultSenderAddress,
		Courier:       config.CourierWatch,
		Sidecar:       config.SidecarNative,
		Image:         kratosImage,
		LogLevel:      DefaultLogLevel,
		Admin:         config.AdminLocalhost,
	}
	var problems []Problem

	// Walk the table rather than the map: the order of problems is then stable.
	for i := range Annotations {
		d := &Annotations[i]
		v, ok := annotations[d.Name]
		if !ok {
			continue
		}
		switch {
		case d.parse != nil:
			if err := d.parse(s, v); err != nil {
				problems = append(problems, Problem{d.Name, err.Error()})
			}
		case d.Kind == KindLabel || d.Name == LabelInstance:
			problems = append(problems, Problem{d.Name, "is a label, not an annotation: set it under metadata.labels"})
		}
	}
	var unknown []Problem
	for k := range annotations {
		if strings.HasPrefix(k, Prefix) && annotationIndex[k] == nil {
			unknown = append(unknown, Problem{k, unknownMessage(k)})
		}
	}
	sort.Slice(unknown, func(i, j int) bool { return unknown[i].Field < unknown[j].Field })
	problems = append(problems, unknown...)

	problems = append(problems, resolve(s, annotations)...)
	if len(problems) > 0 {
		return nil, &InvalidError{Problems: problems}
	}
	return s, nil
}

// resolve applies the defaults that depend on other settings and checks their combinations.
func resolve(s *config.Spec, ann map[string]string) []Problem {
	var problems []Problem
	switch {
	case s.Database == "" && s.DatabaseSecret != "":
		s.Database = config.DatabasePostgres
	case s.Database == "":
		s.Database = config.DatabaseSQLite
	case s.Database == config.DatabasePostgres && s.DatabaseSecret == "":
		problems = append(problems, Problem{AnnotationDatabase, "postgres needs " + AnnotationDatabaseSecret + " (a Secret with the connection)"})
	case s.Database == config.DatabaseSQLite && s.DatabaseSecret != "":
		problems = append(problems, Problem{AnnotationDatabaseSecret, "is set but " + AnnotationDatabase + " is sqlite: remove one of them"})
	}
	if s.Migrate == "" {
		// SQLite lives in the pod's emptyDir, so every pod starts empty and must migrate; a
		// shared Postgres is migrated once, deliberately, by the operator.
		s.Migrate = config.MigrateManual
		if s.Database == config.DatabaseSQLite {
			s.Migrate = config.MigrateAuto
		}
	}
	if s.IdentitySchemas == "" && !slices.Contains(BuiltinSchemas, s.DefaultSchema) {
		if _, set := ann[AnnotationDefaultSchema]; set && validSchemaID(s.DefaultSchema) {
			problems = append(problems, Problem{AnnotationDefaultSchema, fmt.Sprintf("%s is not a built-in schema (%s): set %s to a ConfigMap holding %s.json",
				quote(s.DefaultSchema), strings.Join(BuiltinSchemas, ", "), AnnotationIdentitySchemas, s.DefaultSchema)})
		}
	}
	// return-url and allowed-return-urls stay empty when unset: rendering derives them from
	// ui-url and public-url (config's returnURL and allowedReturnURLs), one decision in one place.
	return problems
}

// Warnings are the admission warnings a valid spec deserves for pod: settings whose defaults
// are fine for a try-out but surprising in production, and combinations that work badly.
func Warnings(pod *corev1.Pod, s *config.Spec) []string {
	var w []string
	if s.Sidecar == config.SidecarContainer && pod.Spec.RestartPolicy != "" && pod.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		w = append(w, AnnotationSidecar+" is container in a pod that is meant to finish (restartPolicy "+string(pod.Spec.RestartPolicy)+"): Kratos keeps it running; use native")
	}
	if s.SecretsSecret == "" {
		w = append(w, AnnotationSecretsSecret+" is not set: Kratos gets random per-pod secrets, sessions do not survive a restart")
	}
	if s.SMTPSecret == "" && s.Courier == config.CourierWatch {
		w = append(w, AnnotationSMTPSecret+" is not set: the courier delivers no mail")
	}
	if s.Admin == config.AdminPod {
		w = append(w, AnnotationAdmin+" is pod: the Kratos admin API is reachable from the pod network")
	}
	return w
}

func unknownMessage(key string) string {
	best, bestDist := "", 4 // suggest only close matches
	for i := range Annotations {
		if Annotations[i].parse == nil {
			continue
		}
		if d := editDistance(key, Annotations[i].Name, bestDist); d < bestDist {
			best, bestDist = Annotations[i].Name, d
		}
	}
	if best != "" {
		return "unknown annotation (did you mean " + best + "?)"
	}
	return "unknown annotation"
}

// editDistance is the Levenshtein distance of a and b, or limit when it is at least limit.
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= limit {
			return limit
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}

// quote shows a user value in a message, bounded so a huge annotation cannot bloat a denial.
func quote(v string) string {
	const max = 80
	if len(v) > max {
		return strconv.Quote(v[:max]) + "..."
	}
	return strconv.Quote(v)
}

// splitList splits a comma-separated annotation, trimming blanks and dropping empty items.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func parseEnum(values []string, set func(*config.Spec, string)) func(*config.Spec, string) error {
	return func(s *config.Spec, v string) error {
		if !slices.Contains(values, v) {
			return fmt.Errorf("%s is not one of %s", quote(v), strings.Join(values, ", "))
		}
		set(s, v)
		return nil
	}
}

func checkObjectName(kind, v string) error {
	if v == "" {
		return fmt.Errorf("empty %s name", kind)
	}
	if errs := content.IsDNS1123Subdomain(v); len(errs) > 0 {
		return fmt.Errorf("%s is not a valid %s name: %s", quote(v), kind, errs[0])
	}
	return nil
}

func parseSecretName(set func(*config.Spec, string)) func(*config.Spec, string) error {
	return func(s *config.Spec, v string) error {
		if err := checkObjectName("Secret", v); err != nil {
			return err
		}
		set(s, v)
		return nil
	}
}

func parseConfigMapName(set func(*config.Spec, string)) func(*config.Spec, string) error {
	return func(s *config.Spec, v string) error {
		if err := checkObjectName("ConfigMap", v); err != nil {
			return err
		}
		set(s, v)
		return nil
	}
}

func parseIDPSecrets(s *config.Spec, v string) error {
	names := splitList(v)
	if len(names) == 0 {
		return errors.New("no Secret named")
	}
	var errs []string
	for i, n := range names {
		if err := checkObjectName("Secret", n); err != nil {
			errs = append(errs, err.Error())
		} else if slices.Contains(names[:i], n) {
			errs = append(errs, fmt.Sprintf("Secret %s is listed twice", quote(n)))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, ", "))
	}
	s.IDPSecrets = names
	return nil
}

// schemaID matches a ConfigMap key stem that is also a sensible Kratos schema id.
var schemaID = regexp.MustCompile(`^[A-Za-z0-9]([-._A-Za-z0-9]{0,200}[A-Za-z0-9])?$`)

func validSchemaID(v string) bool { return schemaID.MatchString(v) }

func parseSchemaID(s *config.Spec, v string) error {
	if !validSchemaID(v) {
		return fmt.Errorf("%s is not a valid schema id (letters, digits, '-', '.', '_')", quote(v))
	}
	s.DefaultSchema = v
	return nil
}

// checkURL accepts absolute http(s) URLs without credentials (annotations are not secret).
// wildcard allows a leading "*." in the host, as Kratos does for allow-lists and CORS.
func checkURL(v string, wildcard bool) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%s is not an absolute http or https URL", quote(v))
	}
	if u.User != nil {
		return fmt.Errorf("%s carries credentials: annotations are not secret", quote(v))
	}
	host := u.Hostname()
	if wildcard {
		host = strings.TrimPrefix(host, "*.")
	}
	if host == "" || strings.ContainsAny(host, "*") {
		return fmt.Errorf("%s has an invalid host", quote(v))
	}
	return nil
}

func parseURL(set func(*config.Spec, string)) func(*config.Spec, string) error {
	return func(s *config.Spec, v string) error {
		if err := checkURL(v, false); err != nil {
			return err
		}
		set(s, v)
		return nil
	}
}

func parseURLList(set func(*config.Spec, []string)) func(*config.Spec, string) error {
	return func(s *config.Spec, v string) error {
		items := splitList(v)
		if len(items) == 0 {
			return errors.New("no URL given")
		}
		var errs []string
		for _, item := range items {
			if err := checkURL(item, true); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if len(errs) > 0 {
			return errors.New(strings.Join(errs, ", "))
		}
		set(s, items)
		return nil
	}
}

func parseOrigins(s *config.Spec, v string) error {
	items := splitList(v)
	if len(items) == 0 {
		return errors.New("no origin given")
	}
	var errs []string
	for _, item := range items {
		if item == "*" {
			continue
		}
		if err := checkURL(item, true); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if u, _ := url.Parse(item); (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, fmt.Sprintf("%s is not an origin (scheme://host[:port])", quote(item)))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, ", "))
	}
	s.CORSOrigins = items
	return nil
}

func parseFeatures(s *config.Spec, v string) error {
	var unknown []string
	on := map[string]bool{}
	for _, f := range splitList(v) {
		if !slices.Contains(config.AllFeatures, f) {
			unknown = append(unknown, quote(f))
			continue
		}
		on[f] = true
	}
	if len(unknown) > 0 {
		return fmt.Errorf("unknown feature %s (known: %s)", strings.Join(unknown, ", "), strings.Join(config.AllFeatures, ", "))
	}
	// Documentation order, whatever the user's order: the spec (and its hash) is canonical.
	s.Features = []string{}
	for _, f := range config.AllFeatures {
		if on[f] {
			s.Features = append(s.Features, f)
		}
	}
	return nil
}

func parseSender(s *config.Spec, v string) error {
	a, err := mail.ParseAddress(v)
	// The address must stand on its own (rendering re-parses it) and the name, which may come
	// from an RFC 2047 encoded word, must be one line: it ends up in a mail header.
	if err != nil || !strings.Contains(a.Address, "@") || !isBareAddress(a.Address) || strings.ContainsFunc(a.Name, isControl) {
		return fmt.Errorf("%s is not Name <address> or address", quote(v))
	}
	s.SenderName, s.SenderAddress = a.Name, a.Address
	return nil
}

func isBareAddress(v string) bool {
	a, err := mail.ParseAddress(v)
	return err == nil && a.Address == v && a.Name == ""
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// imageRef is the shape of an OCI image reference: [host[:port]/]path[:tag][@digest].
var imageRef = regexp.MustCompile(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?` +
	`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` +
	`(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`)

// ValidImage checks the shape of an image reference (the webhook's image flags use it too).
func ValidImage(ref string) error {
	if len(ref) > 512 || !imageRef.MatchString(ref) {
		return fmt.Errorf("%s is not an image reference", quote(ref))
	}
	return nil
}

func parseImage(s *config.Spec, v string) error {
	if err := ValidImage(v); err != nil {
		return err
	}
	s.Image = v
	return nil
}

func parseLogLevel(s *config.Spec, v string) error {
	if v == "warn" { // the common spelling; Kratos (logrus) only knows "warning"
		v = "warning"
	}
	if !slices.Contains(LogLevels, v) {
		return fmt.Errorf("%s is not one of %s", quote(v), strings.Join(LogLevels, ", "))
	}
	s.LogLevel = v
	return nil
}

func parseQuantity(set func(*config.Spec, string)) func(*config.Spec, string) error {
	return func(s *config.Spec, v string) error {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return fmt.Errorf("%s is not a quantity (e.g. 250m, 256Mi)", quote(v))
		}
		if q.Sign() <= 0 {
			return fmt.Errorf("%s must be positive", quote(v))
		}
		set(s, q.String())
		return nil
	}
}

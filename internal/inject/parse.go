package inject

import (
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

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
// the Annotations table (docs/annotations.md). kratosImage is the default Kratos image (the webhook's --kratos-image). On bad
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
		Metrics:       config.MetricsOn,
	}
	var problems []Problem
	invalid := settingProblems(s, annotations)

	// Walk the table rather than the map: the order of problems is then stable. An invalid
	// setting counts as absent, so defaults and the rules that tie settings together are
	// judged on the valid ones, and one bad annotation is one problem.
	for i := range Annotations {
		d := &Annotations[i]
		v, ok := annotations[d.Name]
		if !ok {
			continue
		}
		switch {
		case d.parse != nil && invalid[i] != "":
			problems = append(problems, Problem{d.Name, invalid[i]})
		case d.parse != nil:
			_ = d.parse(s, v) // succeeded in settingProblems
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

	resolve(s)
	// Every setting that reached s is valid on its own: what Validate finds now are the rules
	// that tie settings together (or a bad default, such as a wrong --kratos-image).
	for _, fe := range fieldErrors(s.Validate()) {
		problems = append(problems, fieldProblem(fe, annotations))
	}
	// Not a Spec.Validate rule: Render checks the default schema against the schemas it loads,
	// with its own message. Checked here too so that such a pod is refused at admission rather
	// than failing to start.
	if s.IdentitySchemas == "" && !slices.Contains(config.BuiltinSchemas, s.DefaultSchema) {
		problems = append(problems, Problem{AnnotationDefaultSchema, fmt.Sprintf("%s is not a built-in schema (%s): set %s to a ConfigMap holding %s.json",
			quote(s.DefaultSchema), strings.Join(config.BuiltinSchemas, ", "), AnnotationIdentitySchemas, s.DefaultSchema)})
	}
	if len(problems) > 0 {
		return nil, &InvalidError{Problems: problems}
	}
	return s, nil
}

// settingProblems judges each setting present in annotations on its own, applied over
// defaults: the problem with it, by index in Annotations ("" when valid). A setting is judged
// by its parse, then by Spec.Validate's rules on the fields it sets; those rules never depend
// on other fields, so one Validate judges every setting at once.
func settingProblems(defaults *config.Spec, annotations map[string]string) []string {
	problems := make([]string, len(Annotations))
	all := *defaults // parse replaces fields (slices too), so defaults is left as it was
	for i := range Annotations {
		d := &Annotations[i]
		v, ok := annotations[d.Name]
		if !ok || d.parse == nil {
			continue
		}
		if v == "" && len(d.fields) == 1 {
			// In the Spec an empty optional field reads as unset, which a present but empty
			// annotation is not: judge the empty value itself.
			if msg := config.ValueProblem(d.fields[0], ""); msg != "" {
				problems[i] = msg
				continue
			}
		}
		if err := d.parse(&all, v); err != nil {
			problems[i] = err.Error()
		}
	}
	for _, fe := range fieldErrors(all.Validate()) {
		// A field whose annotation is absent holds a default, or nothing yet (database and
		// migrate are resolved later); rules that tie two fields wait until then too.
		i, ok := fieldIndex[fe.Field]
		if !ok || fe.With != "" {
			continue
		}
		d := &Annotations[i]
		v, set := annotations[d.Name]
		if !set || problems[i] != "" { // one problem per setting
			continue
		}
		problems[i] = fe.Msg
		if d.problem != nil {
			problems[i] = d.problem(v)
		}
	}
	return problems
}

// fieldErrors lists the broken rules in the result of Spec.Validate.
func fieldErrors(err error) []config.FieldError {
	var ve *config.ValidationError
	if errors.As(err, &ve) {
		return ve.Errors
	}
	if err != nil { // Validate fails otherwise only for a nil spec
		return []config.FieldError{{Field: "spec", Msg: err.Error()}}
	}
	return nil
}

// fieldProblem names the annotation that sets the field at fault.
func fieldProblem(fe config.FieldError, annotations map[string]string) Problem {
	i, ok := fieldIndex[fe.Field]
	if !ok { // every field has a setting (TestEveryFieldHasASetting); keep the JSON name
		return Problem{fe.Field, fe.Msg}
	}
	d := &Annotations[i]
	if v, set := annotations[d.Name]; set && d.problem != nil {
		return Problem{d.Name, d.problem(v)}
	}
	return Problem{d.Name, fe.Msg}
}

// resolve applies the defaults that depend on other settings.
func resolve(s *config.Spec) {
	switch {
	case s.Database == "" && s.DatabaseSecret != "":
		s.Database = config.DatabasePostgres
	case s.Database == "":
		s.Database = config.DatabaseSQLite
	}
	if s.Migrate == "" {
		// SQLite lives in the pod's emptyDir, so every pod starts empty and must migrate; a
		// shared Postgres is migrated once, deliberately, by the operator.
		s.Migrate = config.MigrateManual
		if s.Database == config.DatabaseSQLite {
			s.Migrate = config.MigrateAuto
		}
	}
	// return-url and allowed-return-urls stay empty when unset: rendering derives them from
	// ui-url and public-url (config's returnURL and allowedReturnURLs), one decision in one place.
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

// quote shows a user value in a message, bounded so a huge annotation cannot bloat a denial,
// with a URL's credentials masked (config.RedactURL): the webhook logs denials and the
// ReplicaSet's events repeat them.
func quote(v string) string { return config.Quote(v) }

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

// The parsers below only turn an annotation into Spec values; Spec.Validate judges the values.

func parseString(set func(*config.Spec, string)) func(*config.Spec, string) error {
	return func(s *config.Spec, v string) error {
		set(s, v)
		return nil
	}
}

// parseList parses a comma-separated list; one without items is refused with empty (in the
// Spec it would read as unset).
func parseList(empty string, set func(*config.Spec, []string)) func(*config.Spec, string) error {
	return func(s *config.Spec, v string) error {
		items := splitList(v)
		if len(items) == 0 {
			return errors.New(empty)
		}
		set(s, items)
		return nil
	}
}

// parseFeatures: unlike the other lists, an empty value is meaningful (every feature off).
func parseFeatures(s *config.Spec, v string) error {
	s.Features = config.CanonicalFeatures(splitList(v))
	return nil
}

func parseSender(s *config.Spec, v string) error {
	a, err := mail.ParseAddress(v)
	if err != nil {
		return errors.New(senderProblem(v))
	}
	s.SenderName, s.SenderAddress = a.Name, a.Address
	return nil
}

// senderProblem is the one message for a bad sender, whichever of its two fields is wrong:
// the address must stand on its own (rendering re-parses it) and the name, which may come
// from an RFC 2047 encoded word, must be one line (it ends up in a mail header).
func senderProblem(v string) string { return quote(v) + " is not Name <address> or address" }

// ValidImage checks the shape of an image reference (the webhook's and the plugin's image
// flags); the rule is the Spec's.
func ValidImage(ref string) error { return config.ValidImage(ref) }

func parseLogLevel(s *config.Spec, v string) error {
	if v == "warn" { // the common spelling; Kratos (logrus) only knows "warning"
		v = "warning"
	}
	s.LogLevel = v
	return nil
}

// parseQuantity stores the canonical form (the spec's hash then ignores the spelling).
func parseQuantity(set func(*config.Spec, string)) func(*config.Spec, string) error {
	return func(s *config.Spec, v string) error {
		set(s, config.CanonicalQuantity(v))
		return nil
	}
}

package inject

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/kratos-injector/kratos-injector/internal/config"
)

func TestDefaults(t *testing.T) {
	s, err := ParseAnnotations(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	want := &config.Spec{
		Database: config.DatabaseSQLite, DefaultSchema: "default", PublicURL: DefaultPublicURL,
		Features:   []string{config.FeatureLocalIDP, config.FeatureRecovery},
		SenderName: "Kratos", SenderAddress: "no-reply@localhost", Migrate: config.MigrateAuto,
		Courier: config.CourierWatch, Sidecar: config.SidecarNative, Image: "oryd/kratos:v1.3.1",
		LogLevel: "info", Admin: config.AdminLocalhost, Metrics: config.MetricsOn,
	}
	if d := cmp.Diff(want, s); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
	// The default spec needs no input at all: it renders whole.
	if _, err := config.Render(s, config.RenderOptions{InputDir: t.TempDir()}); err != nil {
		t.Errorf("render the default spec: %v", err)
	}

	s, err = ParseAnnotations(map[string]string{AnnotationDatabaseSecret: "db", AnnotationUIURL: "https://ui.example.com"}, "my/kratos:1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Database != config.DatabasePostgres || s.Migrate != config.MigrateManual || s.Image != "my/kratos:1" {
		t.Errorf("postgres defaults: %+v", s)
	}
}

func TestAccepted(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		check      func(*config.Spec) bool
	}{
		{AnnotationSender, "Acme Login <login@acme.example>", func(s *config.Spec) bool {
			return s.SenderName == "Acme Login" && s.SenderAddress == "login@acme.example"
		}},
		{AnnotationSender, `"Acme, Inc." <login@acme.example>`, func(s *config.Spec) bool { return s.SenderName == "Acme, Inc." }},
		{AnnotationSender, "=?utf-8?q?J=C3=B6rg?= <login@acme.example>", func(s *config.Spec) bool { return s.SenderName == "Jörg" }},
		{AnnotationSender, "login@acme.example", func(s *config.Spec) bool { return s.SenderName == "" && s.SenderAddress == "login@acme.example" }},
		{AnnotationLogLevel, "warn", func(s *config.Spec) bool { return s.LogLevel == "warning" }},
		{AnnotationFeatures, "", func(s *config.Spec) bool { return s.Features != nil && len(s.Features) == 0 }},
		{AnnotationFeatures, " mfa , local-idp,mfa", func(s *config.Spec) bool { return cmp.Equal(s.Features, []string{"local-idp", "mfa"}) }},
		{AnnotationCPU, "0.5", func(s *config.Spec) bool { return s.CPU == "500m" }},
		{AnnotationCORSOrigins, "*", func(s *config.Spec) bool { return cmp.Equal(s.CORSOrigins, []string{"*"}) }},
		{AnnotationImage, "localhost:5000/ory/kratos@sha256:" + strings.Repeat("a", 64), func(s *config.Spec) bool { return strings.HasPrefix(s.Image, "localhost:5000/") }},
		{AnnotationDefaultSchema, "admin", func(s *config.Spec) bool { return s.DefaultSchema == "admin" }},
		{AnnotationStatus, "anything", func(s *config.Spec) bool { return true }},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			s, err := ParseAnnotations(map[string]string{tc.key: tc.value}, "")
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(s) {
				t.Errorf("unexpected spec %+v", s)
			}
			checkRenderable(t, s, t.TempDir())
		})
	}
}

// TestDenials is every way a pod is refused, each naming the field at fault.
func TestDenials(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		mutate      func(*corev1.Pod)
		field       string // the one problem's field
		msg         string // a substring of its message
	}{
		{"unknown annotation", map[string]string{Prefix + "databse-secret": "x"}, nil, Prefix + "databse-secret", "did you mean kratos-injector.io/database-secret?"},
		{"unknown far annotation", map[string]string{Prefix + "totally-unknown": "x"}, nil, Prefix + "totally-unknown", "unknown annotation"},
		{"label as annotation", map[string]string{LabelInject: "true"}, nil, LabelInject, "is a label"},
		{"instance as annotation", map[string]string{LabelInstance: "x"}, nil, LabelInstance, "is a label"},
		{"bad secret name", map[string]string{AnnotationDatabaseSecret: "Bad_Name"}, nil, AnnotationDatabaseSecret, "not a valid Secret name"},
		{"empty secret name", map[string]string{AnnotationSMTPSecret: ""}, nil, AnnotationSMTPSecret, "empty Secret name"},
		{"bad secrets-secret", map[string]string{AnnotationSecretsSecret: "a/b"}, nil, AnnotationSecretsSecret, "not a valid Secret name"},
		{"bad idp secret", map[string]string{AnnotationIDPSecrets: "ok,NOT-OK"}, nil, AnnotationIDPSecrets, `"NOT-OK" is not a valid Secret name`},
		{"duplicate idp secret", map[string]string{AnnotationIDPSecrets: "gh,gh"}, nil, AnnotationIDPSecrets, "listed twice"},
		{"empty idp list", map[string]string{AnnotationIDPSecrets: " , "}, nil, AnnotationIDPSecrets, "no Secret"},
		{"bad configmap", map[string]string{AnnotationIdentitySchemas: "-x"}, nil, AnnotationIdentitySchemas, "not a valid ConfigMap name"},
		{"bad overlay configmap", map[string]string{AnnotationConfig: "x..y"}, nil, AnnotationConfig, "not a valid ConfigMap name"},
		{"bad schema id", map[string]string{AnnotationDefaultSchema: "a b"}, nil, AnnotationDefaultSchema, "not a valid schema id"},
		{"schema not built in", map[string]string{AnnotationDefaultSchema: "customer"}, nil, AnnotationDefaultSchema, "not a built-in schema"},
		{"relative url", map[string]string{AnnotationPublicURL: "/auth"}, nil, AnnotationPublicURL, "absolute http or https URL"},
		{"ftp url", map[string]string{AnnotationUIURL: "ftp://ui.example.com"}, nil, AnnotationUIURL, "absolute http or https URL"},
		{"url with credentials", map[string]string{AnnotationHydraAdminURL: "http://u:p@hydra:4445"}, nil, AnnotationHydraAdminURL, "credentials"},
		{"bad return url", map[string]string{AnnotationReturnURL: "example.com"}, nil, AnnotationReturnURL, "absolute"},
		{"bad allowed return url", map[string]string{AnnotationAllowedReturnURLs: "https://ok.example.com,mailto:x"}, nil, AnnotationAllowedReturnURLs, `"mailto:x"`},
		{"wildcard in the middle", map[string]string{AnnotationAllowedReturnURLs: "https://a.*.example.com"}, nil, AnnotationAllowedReturnURLs, "invalid host"},
		{"cors origin with path", map[string]string{AnnotationCORSOrigins: "https://app.example.com/path"}, nil, AnnotationCORSOrigins, "not an origin"},
		{"unknown feature", map[string]string{AnnotationFeatures: "local-idp,sso,magic"}, nil, AnnotationFeatures, `unknown feature "sso", "magic"`},
		{"bad quantity", map[string]string{AnnotationCPU: "lots"}, nil, AnnotationCPU, "not a quantity"},
		{"negative quantity", map[string]string{AnnotationMemory: "-1Gi"}, nil, AnnotationMemory, "must be positive"},
		{"zero quantity", map[string]string{AnnotationMemory: "0"}, nil, AnnotationMemory, "must be positive"},
		{"bad database", map[string]string{AnnotationDatabase: "mysql"}, nil, AnnotationDatabase, `"mysql" is not one of postgres, sqlite`},
		{"bad migrate", map[string]string{AnnotationMigrate: "yes"}, nil, AnnotationMigrate, "not one of auto, manual"},
		{"bad courier", map[string]string{AnnotationCourier: "on"}, nil, AnnotationCourier, "not one of watch, off"},
		{"bad sidecar", map[string]string{AnnotationSidecar: "Native"}, nil, AnnotationSidecar, "not one of native, container"},
		{"bad admin", map[string]string{AnnotationAdmin: "public"}, nil, AnnotationAdmin, "not one of localhost, pod"},
		{"bad log level", map[string]string{AnnotationLogLevel: "verbose"}, nil, AnnotationLogLevel, "not one of trace"},
		{"bad image", map[string]string{AnnotationImage: "Oryd/Kratos:latest"}, nil, AnnotationImage, "not an image reference"},
		{"image with space", map[string]string{AnnotationImage: "oryd/kratos v1"}, nil, AnnotationImage, "not an image reference"},
		{"postgres without secret", map[string]string{AnnotationDatabase: "postgres"}, nil, AnnotationDatabase, "needs kratos-injector.io/database-secret"},
		{"sqlite with secret", map[string]string{AnnotationDatabase: "sqlite", AnnotationDatabaseSecret: "db"}, nil, AnnotationDatabaseSecret, "database is sqlite"},
		{"bad sender", map[string]string{AnnotationSender: "Kratos no-reply@example.com"}, nil, AnnotationSender, "not Name <address> or address"},
		{"sender with a newline in an encoded name", map[string]string{AnnotationSender: "=?utf-8?q?a=0Ab?= <a@b.c>"}, nil, AnnotationSender, "not Name <address>"},
		{"sender header injection", map[string]string{AnnotationSender: "K <a@b>\r\nBcc: c@d"}, nil, AnnotationSender, "not Name <address>"},
		{"container name clash", nil, func(p *corev1.Pod) { p.Spec.Containers[0].Name = "kratos" }, "spec.containers[kratos]", "reserved"},
		{"init container name clash", nil, func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "kratos-migrate", Image: "x"}}
		}, "spec.initContainers[kratos-migrate]", "reserved"},
		{"volume name clash", nil, func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{{Name: "kratos-config"}} }, "spec.volumes[kratos-config]", "reserved"},
		{"secret volume prefix clash", nil, func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{{Name: "kratos-secret-x"}} }, "spec.volumes[kratos-secret-x]", "reserved"},
		{"port clash", nil, func(p *corev1.Pod) { p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 4434}} }, "spec.containers[app].ports", "clashes"},
		{"port name clash", nil, func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "kratos-public", ContainerPort: 9000}}
		}, "spec.containers[app].ports", "clashes"},
		{"host network", nil, func(p *corev1.Pod) { p.Spec.HostNetwork = true }, "spec.hostNetwork", "host-network"},
		{"bad pinned instance", nil, func(p *corev1.Pod) { p.Labels[LabelInstance] = "no spaces" }, LabelInstance, "not a valid label value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := labelledPod(tc.annotations)
			if tc.mutate != nil {
				tc.mutate(pod)
			}
			out, err := Inject(pod, testOptions)
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("want *InvalidError, got %v (pod injected: %v)", err, out != nil)
			}
			if out != nil {
				t.Error("a pod was returned with the error")
			}
			if len(inv.Problems) != 1 {
				t.Fatalf("want one problem, got %d: %v", len(inv.Problems), err)
			}
			if p := inv.Problems[0]; p.Field != tc.field || !strings.Contains(p.Message, tc.msg) {
				t.Errorf("got %s: %s\nwant %s: ...%s...", p.Field, p.Message, tc.field, tc.msg)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("message %q does not name %s", err, tc.field)
			}
		})
	}
}

// TestAllProblemsInOneMessage: one denial lists everything, in a stable order.
func TestAllProblemsInOneMessage(t *testing.T) {
	pod := labelledPod(map[string]string{
		AnnotationPublicURL:  "nope",
		AnnotationFeatures:   "sso",
		AnnotationCPU:        "fast",
		AnnotationDatabase:   "postgres",
		Prefix + "zzz":       "1",
		Prefix + "aaa":       "1",
		AnnotationSender:     "bad",
		AnnotationSidecar:    "both",
		AnnotationMemory:     "lots",
		AnnotationIDPSecrets: "A",
	})
	pod.Spec.Containers[0].Name = "kratos"
	pod.Spec.Volumes = []corev1.Volume{{Name: "kratos-tmp"}}
	var first string
	for i := range 5 { // map order must not leak into the message
		_, err := Inject(pod, testOptions)
		var inv *InvalidError
		if !errors.As(err, &inv) {
			t.Fatalf("want *InvalidError, got %v", err)
		}
		if i == 0 {
			first = err.Error()
			// Table order, then unknown keys sorted, then combinations, then clashes.
			want := []string{AnnotationIDPSecrets, AnnotationPublicURL, AnnotationFeatures, AnnotationSender,
				AnnotationSidecar, AnnotationCPU, AnnotationMemory, Prefix + "aaa", Prefix + "zzz", AnnotationDatabase,
				"spec.containers[kratos]", "spec.volumes[kratos-tmp]"}
			var got []string
			for _, p := range inv.Problems {
				got = append(got, p.Field)
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("problems (-want +got):\n%s\n%s", d, err)
			}
			if !strings.HasPrefix(first, "cannot inject Kratos, 12 problems: ") {
				t.Errorf("message: %s", first)
			}
			for _, f := range want {
				if !strings.Contains(first, f+": ") {
					t.Errorf("message does not name %s: %s", f, first)
				}
			}
		} else if err.Error() != first {
			t.Errorf("message not stable:\n%s\n%s", first, err)
		}
	}
}

func TestQuoteBounded(t *testing.T) {
	_, err := ParseAnnotations(map[string]string{AnnotationPublicURL: strings.Repeat("x", 100000)}, "")
	if err == nil || len(err.Error()) > 300 {
		t.Fatalf("unbounded message (%d bytes)", len(err.Error()))
	}
}

func TestWarnings(t *testing.T) {
	pod := labelledPod(nil)
	s, _ := ParseAnnotations(map[string]string{AnnotationAdmin: "pod"}, "")
	if w := Warnings(pod, s); len(w) != 3 {
		t.Errorf("want 3 warnings, got %q", w)
	}
	s, _ = ParseAnnotations(map[string]string{AnnotationSecretsSecret: "s", AnnotationSMTPSecret: "m"}, "")
	if w := Warnings(pod, s); len(w) != 0 {
		t.Errorf("want none, got %q", w)
	}
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	s, _ = ParseAnnotations(map[string]string{AnnotationSecretsSecret: "s", AnnotationCourier: "off", AnnotationSidecar: "container"}, "")
	if w := Warnings(pod, s); len(w) != 1 || !strings.Contains(w[0], "use native") {
		t.Errorf("want the Job warning, got %q", w)
	}
}

// TestTable keeps the documentation table complete: every constant has an entry with docs,
// and every setting parses its own example.
func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range Annotations {
		if seen[d.Name] {
			t.Errorf("%s twice", d.Name)
		}
		seen[d.Name] = true
		if !strings.HasPrefix(d.Name, Prefix) || d.Doc == "" || d.Default == "" || d.Example == "" {
			t.Errorf("%s: incomplete entry", d.Name)
		}
		if d.Kind == KindSetting {
			ann := map[string]string{d.Name: d.Example}
			switch d.Name {
			case AnnotationDefaultSchema:
				ann[AnnotationIdentitySchemas] = "schemas"
			case AnnotationDatabase:
				ann[AnnotationDatabaseSecret] = "db"
			}
			if _, err := ParseAnnotations(ann, ""); err != nil {
				t.Errorf("%s: example %q rejected: %v", d.Name, d.Example, err)
			}
		}
	}
	for _, k := range []string{LabelInject, LabelInstance, AnnotationStatus, AnnotationDatabaseSecret, AnnotationDatabase,
		AnnotationSMTPSecret, AnnotationIDPSecrets, AnnotationSecretsSecret, AnnotationIdentitySchemas, AnnotationDefaultSchema,
		AnnotationConfig, AnnotationPublicURL, AnnotationUIURL, AnnotationReturnURL, AnnotationAllowedReturnURLs,
		AnnotationCORSOrigins, AnnotationHydraAdminURL, AnnotationFeatures, AnnotationSender, AnnotationMigrate,
		AnnotationCourier, AnnotationSidecar, AnnotationImage, AnnotationLogLevel, AnnotationCPU, AnnotationMemory, AnnotationAdmin,
		AnnotationMetrics} {
		if !seen[k] {
			t.Errorf("%s missing from Annotations", k)
		}
	}
	if len(seen) != 28 {
		t.Errorf("%d entries", len(seen))
	}
}

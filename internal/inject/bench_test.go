package inject

import (
	"context"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// typicalPod is a Deployment's pod with a Postgres, SMTP and secrets Secret and a UI.
func typicalPod() map[string]string {
	return map[string]string{
		AnnotationDatabaseSecret: "app-db-app",
		AnnotationSMTPSecret:     "smtp",
		AnnotationSecretsSecret:  "app-kratos",
		AnnotationPublicURL:      "https://auth.example.com/",
		AnnotationUIURL:          "https://login.example.com",
		AnnotationFeatures:       "local-idp,mfa,verification,recovery",
	}
}

func BenchmarkParseAnnotations(b *testing.B) {
	ann := typicalPod()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseAnnotations(ann, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkInject(b *testing.B) {
	pod := labelledPod(typicalPod())
	in := NewInjector(testOptions)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.Inject(pod); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandle goes through controller-runtime's admission.Webhook.Handle, which also
// serializes the patch: all the per-request work but reading and writing the HTTP bodies.
func BenchmarkHandle(b *testing.B) {
	req := request(b, labelledPod(typicalPod()))
	wh := &admission.Webhook{Handler: NewHandler(testOptions)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp := wh.Handle(ctx, req); !resp.Allowed || len(resp.Patch) == 0 {
			b.Fatal(resp.Result)
		}
	}
}

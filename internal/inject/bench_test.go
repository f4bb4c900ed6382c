package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
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

// harnessReview is the load harness's review (hack/loadtest): a Deployment's pod of 4.7 KB with
// 20 environment variables, probes, resources and the service-account volume, as the API
// server sends it. typicalPod's pod is much smaller, and decoding the pod is most of a review.
func harnessReview(b *testing.B) []byte {
	raw, err := os.ReadFile("../../hack/loadtest/harness/testdata/pod-create-review.json")
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkHandleHarnessReview is BenchmarkHandle on the harness's pod.
func BenchmarkHandleHarnessReview(b *testing.B) {
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(harnessReview(b), &ar); err != nil {
		b.Fatal(err)
	}
	req := admission.Request{AdmissionRequest: *ar.Request}
	wh := &admission.Webhook{Handler: NewHandler(testOptions)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp := wh.Handle(ctx, req); !resp.Allowed || len(resp.Patch) == 0 {
			b.Fatal(resp.Result)
		}
	}
}

// BenchmarkServeHTTP is the whole review as the webhook server serves it, without TLS and
// HTTP/2: reading the body, decoding the review, the handler, encoding the response; against
// controller-runtime's webhook with an allow-all handler (the harness's allow-all), and the
// handler served by controller-runtime's webhook rather than Webhook.
func BenchmarkServeHTTP(b *testing.B) {
	body := harnessReview(b)
	for name, h := range map[string]http.Handler{
		"allow-all": &admission.Webhook{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
			return admission.Allowed("")
		})},
		"kratos-injector":                   NewWebhook(NewHandler(testOptions)),
		"kratos-injector-admission.Webhook": &admission.Webhook{Handler: NewHandler(testOptions)},
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code, rec.Body.String())
				}
			}
		})
	}
}

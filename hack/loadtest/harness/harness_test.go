package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// TestMain lets the harness start this test binary as a baseline server (Config.Self).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-server" {
		if err := ServeMain(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHarnessSmoke runs the harness for about a second against the allow-all baseline, a
// separate process, and reads its table: it keeps `make bench`'s harness compiling and
// working. No timing is asserted.
func TestHarnessSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := Run(ctx, Config{
		Servers: []string{AllowAll}, Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond,
		Rate: 200, Workers: 4, Self: []string{os.Args[0]}, WorkDir: t.TempDir(), Log: &progress,
	})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	var table bytes.Buffer
	if err := WriteTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	if len(rep.Rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rep.Rows))
	}
	r := rep.Rows[0]
	if r.Max.Throughput <= 0 || r.Max.OK == 0 || r.Fixed.OK == 0 {
		t.Errorf("no throughput: %+v", r)
	}
	if r.Errors() != 0 {
		t.Errorf("%d errors: %s %s", r.Errors(), r.Max.FirstError, r.Fixed.FirstError)
	}
	if r.PeakRSS <= 0 {
		t.Errorf("peak RSS %d", r.PeakRSS)
	}
	if !strings.Contains(table.String(), "\n| "+AllowAll+" | ") {
		t.Errorf("the table has no %s row", AllowAll)
	}
}

// TestReviewInjected holds the review to what it must be: a realistic pod of about 4.7 KB
// that the injector injects without denial, so that the checker accepts the injector's
// answer; and the checker refuses a denial, an allow without patch, and a patch that does not
// inject.
func TestReviewInjected(t *testing.T) {
	rv, err := parseReview(DefaultReview)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rv.body); n < 4500 || n > 5000 {
		t.Errorf("review is %d bytes, want about 4.7 KB", n)
	}
	answer := func(h admission.Handler) []byte {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, MutatePath, bytes.NewReader(rv.body))
		req.Header.Set("Content-Type", "application/json")
		(&admission.Webhook{Handler: h}).ServeHTTP(rec, req)
		b, _ := io.ReadAll(rec.Result().Body)
		return b
	}
	injector := answer(inject.NewHandler(inject.Options{InjectorImage: inject.DefaultInjectorImage, KratosImage: inject.DefaultKratosImage, Version: "test"}))
	if err := validatorFor(Injector, rv)(injector); err != nil {
		t.Fatalf("the injector's answer: %v\n%s", err, injector)
	}
	allowAll := answer(admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { return admission.Allowed("") }))
	if err := validatorFor(AllowAll, rv)(allowAll); err != nil {
		t.Errorf("allow-all's answer: %v", err)
	}
	if err := validatorFor(Bare, rv)(bareAllow); err != nil {
		t.Errorf("bare's answer: %v", err)
	}

	noop := []byte(`[{"op":"add","path":"/metadata/labels/x","value":"y"}]`)
	for name, bad := range map[string][]byte{
		"denied":   answer(admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { return admission.Denied("no") })),
		"no patch": allowAll,
		"not injected": answer(admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
			pt := admissionv1.PatchTypeJSONPatch
			return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true, PatchType: &pt, Patch: noop}}
		})),
		"other uid": bytes.Replace(injector, []byte(rv.uid), []byte("00000000-0000-4000-8000-000000000000"), 1),
		"garbage":   []byte("<html>"),
	} {
		if err := validatorFor(Injector, rv)(bad); err == nil {
			t.Errorf("%s: accepted as an injection", name)
		}
	}

	c := &checker{validate: validatorFor(Injector, rv)}
	for i, tc := range []struct {
		code   uint16
		errMsg string
		body   []byte
		ok     bool
	}{
		{200, "", injector, true}, {200, "", injector, true}, {500, "", injector, false},
		{0, "connection reset", nil, false}, {200, "", allowAll, false}, {200, "", injector, true},
	} {
		if err := c.check(tc.code, tc.errMsg, tc.body); (err == nil) != tc.ok {
			t.Errorf("check %d: %v, want ok=%v", i, err, tc.ok)
		}
	}
}

// TestFixedPatchServer runs the fixed-patch baseline (make bench-apiserver's) in-process with
// the injector's patch for the review: its answer passes the harness's check of an injection,
// and a pod that already carries the injector's status annotation gets an allow without a patch,
// as the injector answers a reinvocation.
func TestFixedPatchServer(t *testing.T) {
	rv, err := parseReview(DefaultReview)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, MutatePath, bytes.NewReader(rv.body))
	req.Header.Set("Content-Type", "application/json")
	(&admission.Webhook{Handler: inject.NewHandler(inject.Options{InjectorImage: inject.DefaultInjectorImage, KratosImage: inject.DefaultKratosImage, Version: "test"})}).ServeHTTP(rec, req)
	var injected admissionv1.AdmissionReview
	if err := json.NewDecoder(rec.Result().Body).Decode(&injected); err != nil || injected.Response == nil || len(injected.Response.Patch) == 0 {
		t.Fatalf("the injector's answer: %v", err)
	}

	dir := t.TempDir()
	ca, err := writeCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveAllowAll(ctx, fmt.Sprintf("127.0.0.1:%d", port), dir, injected.Response.Patch) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fixed-patch server: %v", err)
		}
	})

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	post := func(body []byte) []byte {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := client.Post(fmt.Sprintf("https://127.0.0.1:%d%s", port, MutatePath), "application/json", bytes.NewReader(body))
			if err == nil {
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if rerr == nil && resp.StatusCode == http.StatusOK {
					return b
				}
				err = rerr
				if err == nil {
					err = fmt.Errorf("%s: %s", resp.Status, b)
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("fixed-patch server: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := validatorFor(Injector, rv)(post(rv.body)); err != nil {
		t.Fatalf("the fixed-patch answer is not an injection: %v", err)
	}

	again := bytes.Replace(rv.body, []byte(`"kratos-injector.io/sender"`), []byte(`"kratos-injector.io/status":"injected","kratos-injector.io/sender"`), 1)
	if bytes.Equal(again, rv.body) {
		t.Fatal("the review has no sender annotation to put the status next to")
	}
	body := post(again)
	if err := validatorFor(AllowAll, rv)(body); err != nil || bytes.Contains(body, []byte(`"patch"`)) {
		t.Fatalf("an injected pod got %s (%v), want an allow without a patch", body, err)
	}
}

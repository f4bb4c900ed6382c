// Command smokewebhook is the test bed's tiny mutating webhook, run as a pod on the real node to
// prove the API server reaches a webhook registered by Service. It serves TLS with the key pair in
// $TLS_DIR (tls.crt, tls.key) on :8443 and adds the annotation
// smoke.kratos-injector.io/from-pod=<its pod name> to every pod it is sent.
package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
)

type review struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		UID string `json:"uid"`
	} `json:"request,omitempty"`
	Response *response `json:"response,omitempty"`
}

type response struct {
	UID       string `json:"uid"`
	Allowed   bool   `json:"allowed"`
	Patch     []byte `json:"patch,omitempty"`
	PatchType string `json:"patchType,omitempty"`
}

func main() {
	dir := os.Getenv("TLS_DIR")
	host, _ := os.Hostname()
	patch, _ := json.Marshal([]map[string]any{{
		"op": "add", "path": "/metadata/annotations",
		"value": map[string]string{"smoke.kratos-injector.io/from-pod": host},
	}})
	http.HandleFunc("/mutate", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var in review
		if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
			http.Error(w, "bad AdmissionReview", http.StatusBadRequest)
			return
		}
		log.Printf("admitting %s", in.Request.UID)
		out := review{APIVersion: in.APIVersion, Kind: in.Kind,
			Response: &response{UID: in.Request.UID, Allowed: true, Patch: patch, PatchType: "JSONPatch"}}
		_ = json.NewEncoder(w).Encode(out)
	})
	log.Fatal(http.ListenAndServeTLS(":8443", filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), nil))
}

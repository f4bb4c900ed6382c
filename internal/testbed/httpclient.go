package testbed

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"time"
)

// insecureClient is for health endpoints of components whose serving certificate is self-signed
// by the component itself (controller manager, scheduler); nothing secret crosses it.
func insecureClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health checks only
	}}
}

func caClient(caPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
}

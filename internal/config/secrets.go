package config

import (
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Lengths Kratos v1.3.1 demands (config schema: secrets.default/cookie minLength 16,
// secrets.cipher exactly 32; XChaCha20-Poly1305 takes the 32 bytes as its key).
const (
	minSecretLen = 16
	cipherLen    = 32
)

// kratosSecrets renders secrets from the secrets Secret (keys default, cookie, cipher), or
// random per-pod values with a warning.
//
// Each key holds one value per line, newest first: Kratos signs and encrypts with the first and
// still accepts the others, which is how a secret is rotated without logging everyone out.
// default and cipher are required; cookie is optional (Kratos then uses default for cookies).
func (r *renderer) kratosSecrets() (Secrets, error) {
	if r.spec.SecretsSecret == "" {
		r.warn("no secrets-secret: random cookie, cipher and default secrets for this pod; sessions and encrypted OIDC tokens do not survive a restart and are not shared between replicas; set kratos-injector.io/secrets-secret")
		return randomSecrets(r.opts.Rand)
	}
	s, err := r.openSecret(r.spec.SecretsSecret)
	if err != nil {
		return Secrets{}, err
	}
	var out Secrets
	if out.Default, err = secretValues(s, "default", true); err != nil {
		return Secrets{}, err
	}
	if out.Cookie, err = secretValues(s, "cookie", false); err != nil {
		return Secrets{}, err
	}
	if out.Cipher, err = secretValues(s, "cipher", true); err != nil {
		return Secrets{}, err
	}
	return out, nil
}

// secretValues reads one key of the secrets Secret as its list of values and checks them.
func secretValues(s *source, key string, required bool) ([]string, error) {
	fix := fmt.Sprintf("add a random value of at least %d characters (e.g. `openssl rand -hex 32`)", minSecretLen)
	if key == "cipher" {
		fix = fmt.Sprintf("add a random value of exactly %d characters (e.g. `openssl rand -hex 16`)", cipherLen)
	}
	b, ok, err := s.raw(key)
	if err != nil {
		return nil, err
	}
	if !ok {
		if !required {
			return nil, nil
		}
		return nil, s.fail(key, "missing; "+fix)
	}
	var values []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line != "" {
			values = append(values, line)
		}
	}
	if len(values) == 0 {
		return nil, s.fail(key, "empty; "+fix)
	}
	for i, v := range values {
		n := i + 1 // people count lines from 1
		switch {
		case !oneLine(v):
			return nil, s.failf(key, "value %d holds a control character; %s", n, fix)
		case key == "cipher" && (len(v) != cipherLen || utf8.RuneCountInString(v) != cipherLen):
			return nil, s.failf(key, "value %d has %d bytes, a cipher secret is exactly %d ASCII characters; %s", n, len(v), cipherLen, fix)
		case key != "cipher" && utf8.RuneCountInString(v) < minSecretLen:
			return nil, s.failf(key, "value %d is shorter than %d characters; %s", n, minSecretLen, fix)
		}
		for j := range i {
			if values[j] == v {
				return nil, s.failf(key, "value %d repeats value %d; rotated values must differ", n, j+1)
			}
		}
	}
	return values, nil
}

// randomSecrets draws per-pod secrets from rand (hex, so the cipher is 32 ASCII characters).
func randomSecrets(rand io.Reader) (Secrets, error) {
	draw := func(n int) (string, error) {
		b := make([]byte, n)
		if _, err := io.ReadFull(rand, b); err != nil {
			return "", fmt.Errorf("random secret: %w", err)
		}
		return hex.EncodeToString(b), nil
	}
	var out Secrets
	for _, f := range []struct {
		dst   *[]string
		bytes int
	}{{&out.Default, 32}, {&out.Cookie, 32}, {&out.Cipher, cipherLen / 2}} {
		v, err := draw(f.bytes)
		if err != nil {
			return Secrets{}, err
		}
		*f.dst = []string{v}
	}
	return out, nil
}

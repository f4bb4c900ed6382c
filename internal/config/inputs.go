package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"
)

// InputError is a problem with one mounted Secret or ConfigMap. Its message is one line that
// names the object and the key and says how to fix it; it never holds a value read from the
// object, so it is safe for logs, the termination message and pod events.
type InputError struct {
	// Kind is "secret" or "configmap".
	Kind string
	// Name is the Secret's or ConfigMap's name.
	Name string
	// Key is the offending key; empty when the problem is the object itself.
	Key string
	// Problem says what is wrong and what to do, e.g. `missing; add it to the Secret`.
	Problem string
}

func (e *InputError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s %q: %s", e.Kind, e.Name, e.Problem)
	}
	return fmt.Sprintf("%s %q key %q: %s", e.Kind, e.Name, e.Key, e.Problem)
}

// source is one Secret or ConfigMap as the kubelet mounts it: a directory with one file per key.
// Besides the keys, a kubelet mount holds `..data` and `..<timestamp>` entries (the atomic-update
// machinery, the keys are symlinks through them): those are never keys.
type source struct {
	kind, name, dir string
	// data, when not nil, holds the keys instead of dir: a Secret read through the API (the
	// plugin's), parsed by the same code as a mounted one.
	data map[string][]byte
}

func openSecret(inputDir, name string) (*source, error) {
	return openSource("secret", name, SecretDir(inputDir, name))
}

func openConfigMap(inputDir, name string) (*source, error) {
	return openSource("configmap", name, ConfigMapDir(inputDir, name))
}

func openSource(kind, name, dir string) (*source, error) {
	s := &source{kind: kind, name: name, dir: dir}
	// A name is a Kubernetes object name; refuse anything that would leave the input directory.
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return nil, s.fail("", "not a valid object name")
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, s.failf("", "not mounted at %s; injection mounts every %s the annotations name there (running by hand? pass --inputs)", dir, kind)
	case err != nil:
		return nil, s.failf("", "unreadable: %v", cause(err))
	case !st.IsDir():
		return nil, s.failf("", "not mounted: %s is not a directory", dir)
	}
	// An optional volume whose object does not exist is mounted as an empty directory.
	if keys, err := s.keys(); err != nil {
		return nil, err
	} else if len(keys) == 0 {
		return nil, s.failf("", "has no keys; check that the %s exists in the pod's namespace and holds data", kind)
	}
	return s, nil
}

// fail builds the InputError for key (empty: the object itself).
func (s *source) fail(key, problem string) *InputError {
	return &InputError{Kind: s.kind, Name: s.name, Key: key, Problem: problem}
}

// failf is fail with a format.
func (s *source) failf(key, format string, args ...any) *InputError {
	return s.fail(key, fmt.Sprintf(format, args...))
}

// raw returns the bytes of key as stored; ok is false when the key is absent.
func (s *source) raw(key string) (value []byte, ok bool, err error) {
	if strings.HasPrefix(key, "..") {
		return nil, false, nil
	}
	if s.data != nil {
		b, ok := s.data[key]
		return b, ok, nil
	}
	b, err := os.ReadFile(filepath.Join(s.dir, key))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, false, nil
	case err != nil:
		// The *PathError's inner error says why (permission denied, is a directory) without
		// the content; the path is known from the object and key.
		return nil, false, s.failf(key, "unreadable: %v", cause(err))
	}
	return b, true, nil
}

// text returns key as a one-line value: a trailing newline is dropped, because a Secret created
// with `kubectl create secret --from-file` from an editor-written file usually carries one.
func (s *source) text(key string) (value string, ok bool, err error) {
	b, ok, err := s.raw(key)
	if !ok || err != nil {
		return "", ok, err
	}
	v := strings.TrimSuffix(string(b), "\n")
	v = strings.TrimSuffix(v, "\r")
	if !plainText(v) {
		// Caught here, naming the key: otherwise the YAML encoder refuses the whole config
		// without saying which value, or Kratos reads something other than what was meant.
		return "", true, s.fail(key, "holds control characters or bytes that are not UTF-8 text; store the value as plain text")
	}
	return v, true, nil
}

// plainText reports whether v is UTF-8 without control characters other than tab and line
// breaks (a PEM key spans lines; one-line keys check that separately).
func plainText(v string) bool {
	if !utf8.ValidString(v) {
		return false
	}
	for _, r := range v {
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || (r >= 0x7f && r < 0xa0) {
			return false
		}
	}
	return true
}

// required is text for a key that must be present and not empty; fix completes the message.
func (s *source) required(key, fix string) (string, error) {
	v, ok, err := s.text(key)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", s.failf(key, "missing; %s", fix)
	}
	if v == "" {
		return "", s.failf(key, "empty; %s", fix)
	}
	return v, nil
}

// first returns the first of keys that is present (aliases such as username/user).
func (s *source) first(keys ...string) (value, key string, ok bool, err error) {
	for _, k := range keys {
		v, ok, err := s.text(k)
		if err != nil || ok {
			return v, k, ok, err
		}
	}
	return "", "", false, nil
}

// has reports whether key is present.
func (s *source) has(key string) (bool, error) {
	_, ok, err := s.raw(key)
	return ok, err
}

// keys lists the object's keys, sorted, without the kubelet's `..` entries and directories.
func (s *source) keys() ([]string, error) {
	if s.data != nil {
		keys := make([]string, 0, len(s.data))
		for k := range s.data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return keys, nil
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, s.failf("", "unreadable: %v", cause(err))
	}
	var keys []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "..") {
			continue
		}
		// Keys are symlinks in a kubelet mount and plain files elsewhere: follow them.
		st, err := os.Stat(filepath.Join(s.dir, name))
		if err != nil || st.IsDir() {
			continue
		}
		keys = append(keys, name)
	}
	sort.Strings(keys)
	return keys, nil
}

// oneLine reports whether v holds no line break or other control character, as a value that is
// composed into a URL or a YAML scalar must.
func oneLine(v string) bool {
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// cause strips an *fs.PathError's path and operation, keeping why it failed.
func cause(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

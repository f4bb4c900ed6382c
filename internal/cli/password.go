package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kratos-injector/kratos-injector/internal/instance"
)

// defaultPasswordKey is the Secret key read when --password-secret names no key.
const defaultPasswordKey = "password"

// maxPasswordBytes bounds what is read from stdin: bcrypt uses 72 bytes, Kratos refuses far
// longer passwords anyway, and a mistaken pipe should not be slurped whole.
const maxPasswordBytes = 4096

// passwordFlags are the two ways to give a password; never the command line, where it would be
// seen in the process list and the shell history.
type passwordFlags struct {
	FromStdin bool
	// Secret is NAME or NAME/KEY of a Secret in the namespace.
	Secret string
}

func (p *passwordFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&p.FromStdin, "password-stdin", false, "read the password from stdin (prompted without echo on a terminal)")
	cmd.Flags().StringVar(&p.Secret, "password-secret", "", "read the password from a Secret of the namespace: NAME[/KEY] (key default \"password\")")
}

func (p *passwordFlags) Validate() error {
	if p.FromStdin && p.Secret != "" {
		return errors.New("give --password-stdin or --password-secret, not both")
	}
	if p.Secret != "" {
		name, key := p.secretRef()
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return fmt.Errorf("--password-secret %q: Secret name: %s", p.Secret, errs[0])
		}
		if errs := validation.IsConfigMapKey(key); len(errs) > 0 {
			return fmt.Errorf("--password-secret %q: key: %s", p.Secret, errs[0])
		}
	}
	return nil
}

func (p *passwordFlags) secretRef() (name, key string) {
	name, key, ok := strings.Cut(p.Secret, "/")
	if !ok {
		key = defaultPasswordKey
	}
	return name, key
}

// read returns the password, "" when none was asked for.
func (p *passwordFlags) read(ctx context.Context, g *Globals) (string, error) {
	switch {
	case p.FromStdin:
		return readPasswordStdin(g)
	case p.Secret != "":
		return p.readSecret(ctx, g)
	}
	return "", nil
}

func readPasswordStdin(g *Globals) (string, error) {
	in := g.Streams.In
	if in == nil {
		return "", usagef("--password-stdin: no stdin")
	}
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(g.Streams.ErrOut, "Password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(g.Streams.ErrOut)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return checkPassword(string(b), "stdin")
	}
	b, err := io.ReadAll(io.LimitReader(in, maxPasswordBytes+1))
	if err != nil {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	if len(b) > maxPasswordBytes {
		return "", usagef("--password-stdin: more than %d bytes on stdin", maxPasswordBytes)
	}
	return checkPassword(trimNewline(string(b)), "stdin")
}

func (p *passwordFlags) readSecret(ctx context.Context, g *Globals) (string, error) {
	name, key := p.secretRef()
	k, err := g.kube()
	if err != nil {
		return "", err
	}
	s, err := k.clientset.CoreV1().Secrets(k.namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", fmt.Errorf("--password-secret: Secret %s not found in namespace %s", name, k.namespace)
	case apierrors.IsForbidden(err):
		return "", fmt.Errorf("--password-secret: %w", instance.APIError(err, "get", "secrets", k.namespace))
	case err != nil:
		return "", fmt.Errorf("--password-secret: get Secret %s in namespace %s: %w", name, k.namespace, err)
	}
	v, ok := s.Data[key]
	if !ok {
		keys := make([]string, 0, len(s.Data))
		for k := range s.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return "", fmt.Errorf("--password-secret: Secret %s has no key %q (keys: %s); name one with %s/KEY",
			name, key, strings.Join(keys, ", "), name)
	}
	return checkPassword(trimNewline(string(v)), "Secret "+name+" key "+key)
}

// trimNewline drops one trailing line ending: `echo pw |` and `kubectl create secret
// --from-file` of an edited file add one that nobody means as part of the password.
func trimNewline(s string) string {
	s = strings.TrimSuffix(s, "\n")
	return strings.TrimSuffix(s, "\r")
}

func checkPassword(pw, from string) (string, error) {
	if pw == "" {
		return "", usagef("empty password from %s", from)
	}
	return pw, nil
}

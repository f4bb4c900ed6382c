package config

import (
	"net"
	"net/mail"
	"net/url"
	"strconv"
)

// nowhereSMTP is the connection URI used without an SMTP Secret. Kratos has no "mail off"
// switch and requires a URI, so mail goes to a closed local port: delivery fails (and is
// retried, then given up) without ever leaving the pod.
const nowhereSMTP = "smtp://127.0.0.1:1/?disable_starttls=true"

// Values of the smtp-integrator's transport_security.
const (
	transportNone     = "none"
	transportTLS      = "tls"
	transportStartTLS = "starttls"
)

// defaultSMTPPorts are the well-known ports of each transport (RFC 8314, RFC 6409, RFC 5321),
// used when the Secret has no port key.
var defaultSMTPPorts = map[string]string{transportTLS: "465", transportStartTLS: "587", transportNone: "25"}

// courier renders courier.smtp: from the SMTP Secret, or delivering nowhere.
func (r *renderer) courier() (SMTP, error) {
	out := SMTP{FromAddress: r.spec.SenderAddress, FromName: r.spec.SenderName}
	if r.spec.SMTPSecret == "" {
		r.warn("no smtp-secret: recovery and verification mail is not delivered; set kratos-injector.io/smtp-secret")
		out.ConnectionURI = nowhereSMTP
		return out, nil
	}
	s, err := r.openSecret(r.spec.SMTPSecret)
	if err != nil {
		return SMTP{}, err
	}
	if out.ConnectionURI, err = smtpURI(s); err != nil {
		return SMTP{}, err
	}
	if v, ok, err := s.text("from_address"); err != nil {
		return SMTP{}, err
	} else if ok {
		if !isEmail(v) {
			return SMTP{}, s.fail("from_address", "not an email address; use a bare address such as no-reply@example.com")
		}
		out.FromAddress = v
	}
	if v, ok, err := s.text("from_name"); err != nil {
		return SMTP{}, err
	} else if ok {
		if !oneLine(v) {
			return SMTP{}, s.fail("from_name", "holds a line break or control character; use one line")
		}
		out.FromName = v
	}
	return out, nil
}

// smtpURI returns key uri as is, or composes Kratos's connection URI from the smtp-integrator
// fields. Kratos v1.3.1 (courier/smtp.go) reads: scheme smtp (STARTTLS enforced unless
// disable_starttls=true) or smtps (implicit TLS), and query skip_ssl_verify.
func smtpURI(s *source) (string, error) {
	if v, ok, err := s.text("uri"); err != nil {
		return "", err
	} else if ok {
		if v == "" || !oneLine(v) {
			return "", s.fail("uri", "empty or not one line; put the connection URI there, or use the host/port/user/password/transport_security keys")
		}
		u, perr := url.Parse(v)
		if perr != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" {
			return "", s.fail("uri", "not an SMTP URI; expected smtp://USER:PASSWORD@HOST:PORT/ (STARTTLS) or smtps://... (TLS), credentials percent-encoded")
		}
		return v, nil
	}

	host, ok, err := s.text("host")
	if err != nil {
		return "", err
	}
	if !ok {
		return "", s.fail("host", `missing; the Secret needs key "uri" or keys host, port, user, password and transport_security`)
	}
	if host == "" || !oneLine(host) {
		return "", s.fail("host", "empty or not one line; put the SMTP server's host name there")
	}

	transport := transportStartTLS // Kratos's own default for smtp://
	if v, ok, err := s.text("transport_security"); err != nil {
		return "", err
	} else if ok {
		transport = v
	}
	port, known := defaultSMTPPorts[transport]
	if !known {
		return "", s.fail("transport_security", `not one of "none", "tls", "starttls"`)
	}
	if v, ok, err := s.text("port"); err != nil {
		return "", err
	} else if ok {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 65535 {
			return "", s.fail("port", "not a port number (1-65535)")
		}
		port = v
	}

	skipVerify := false
	if v, ok, err := s.text("skip_ssl_verify"); err != nil {
		return "", err
	} else if ok && v != "" {
		if skipVerify, err = strconv.ParseBool(v); err != nil {
			return "", s.fail("skip_ssl_verify", `not a boolean; use "true" or "false"`)
		}
	}

	u := url.URL{Host: net.JoinHostPort(host, port), Path: "/"}
	user, hasUser, err := s.text("user")
	if err != nil {
		return "", err
	}
	password, hasPassword, err := s.text("password")
	if err != nil {
		return "", err
	}
	switch {
	case hasUser && user != "" && hasPassword:
		u.User = url.UserPassword(user, password)
	case hasUser && user != "":
		u.User = url.User(user)
	case hasPassword && password != "":
		return "", s.fail("user", "missing while password is set; add the SMTP user name")
	}

	// Kratos's mailer (like Go's net/smtp) refuses to send credentials over a connection without
	// TLS to anything but the loopback host: such a config would render, boot and never deliver.
	if transport == transportNone && u.User != nil && !isLoopbackHost(host) {
		return "", s.fail("transport_security", `"none" with a user: Kratos refuses to send SMTP credentials without TLS ("unencrypted connection"); use "starttls" or "tls", or remove user and password`)
	}

	q := url.Values{}
	switch transport {
	case transportNone:
		// Plain text: there is no TLS whose verification could be skipped.
		u.Scheme = "smtp"
		q.Set("disable_starttls", "true")
	case transportStartTLS:
		u.Scheme = "smtp"
	case transportTLS:
		u.Scheme = "smtps"
	}
	if skipVerify && transport != transportNone {
		q.Set("skip_ssl_verify", "true")
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// isEmail reports whether v is a bare email address (what Kratos's from_address accepts).
func isEmail(v string) bool {
	a, err := mail.ParseAddress(v)
	return err == nil && a.Address == v && a.Name == ""
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

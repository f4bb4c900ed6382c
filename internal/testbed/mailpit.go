package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Mailpit is a real SMTP server with an HTTP API that shows what was delivered.
type Mailpit struct {
	SMTPHost string
	SMTPPort int
	APIURL   string // http://127.0.0.1:port
	Proc     *Proc
}

// MailpitOptions tunes Mailpit.
type MailpitOptions struct {
	// SMTPListen overrides the SMTP listen address (default 127.0.0.1); the real node's pods
	// need the bridge gateway address.
	SMTPListen string
	// Name distinguishes several Mailpits in one bed (log file and database names); default
	// "mailpit".
	Name string
	// TLSCertFile and TLSKeyFile give Mailpit's SMTP server a certificate (PEM files); with
	// RequireTLS it speaks implicit TLS (SMTPS) only, with RequireSTARTTLS it requires STARTTLS.
	TLSCertFile, TLSKeyFile string
	RequireTLS              bool
	RequireSTARTTLS         bool
	// SMTPPort is the SMTP port; 0 picks a free one. A restart passes the port it had, so
	// clients configured with it reach the new process.
	SMTPPort int
	// AuthFile is a password file (one user:password a line): only those credentials are
	// accepted. Empty: any credentials (and none) are accepted.
	AuthFile string
}

// StartMailpit starts Mailpit with its SMTP and HTTP listeners on free ports (never on all
// interfaces) and, unless opts say otherwise, plain SMTP with any credentials accepted.
func (b *Bed) StartMailpit(opts MailpitOptions) (*Mailpit, error) {
	bin, err := Tool("mailpit")
	if err != nil {
		return nil, err
	}
	host := opts.SMTPListen
	if host == "" {
		host = "127.0.0.1"
	}
	smtpPort := opts.SMTPPort
	if smtpPort == 0 {
		if smtpPort, err = FreePortOn(host); err != nil {
			return nil, err
		}
	}
	httpPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	name := opts.Name
	if name == "" {
		name = "mailpit"
	}
	m := &Mailpit{SMTPHost: host, SMTPPort: smtpPort, APIURL: fmt.Sprintf("http://127.0.0.1:%d", httpPort)}
	args := []string{"--listen", fmt.Sprintf("127.0.0.1:%d", httpPort), "--smtp", host + ":" + strconv.Itoa(smtpPort),
		"--disable-version-check", "--max", "0"} // keep every message: tests count them (default: the newest 500)
	if opts.AuthFile != "" {
		args = append(args, "--smtp-auth-file", opts.AuthFile)
	} else {
		args = append(args, "--smtp-auth-accept-any")
	}
	if opts.TLSCertFile != "" || opts.TLSKeyFile != "" {
		args = append(args, "--smtp-tls-cert", opts.TLSCertFile, "--smtp-tls-key", opts.TLSKeyFile)
		if opts.RequireTLS {
			args = append(args, "--smtp-require-tls")
		}
		if opts.RequireSTARTTLS {
			args = append(args, "--smtp-require-starttls")
		}
	} else {
		args = append(args, "--smtp-auth-allow-insecure")
	}
	args = append(args, "--database", b.Path(name, "mailpit.db"))
	m.Proc, err = b.Start(name, nil, bin, args...)
	if err != nil {
		return nil, err
	}
	if err := m.Proc.WaitReady(30*time.Second, httpOK(m.APIURL+"/api/v1/info", "", nil)); err != nil {
		return nil, err
	}
	return m, nil
}

// Message is the part of Mailpit's message summary the tests read.
type Message struct {
	ID      string `json:"ID"`
	Subject string `json:"Subject"`
	From    struct {
		Name    string `json:"Name"`
		Address string `json:"Address"`
	} `json:"From"`
	To []struct {
		Name    string `json:"Name"`
		Address string `json:"Address"`
	} `json:"To"`
	Snippet string `json:"Snippet"`
}

// Messages lists every delivered message, newest first (all pages).
func (m *Mailpit) Messages(ctx context.Context) ([]Message, error) {
	var all []Message
	for {
		var out struct {
			Total    int       `json:"total"`
			Messages []Message `json:"messages"`
		}
		if err := getJSON(ctx, fmt.Sprintf("%s/api/v1/messages?start=%d&limit=500", m.APIURL, len(all)), &out); err != nil {
			return nil, err
		}
		all = append(all, out.Messages...)
		if len(out.Messages) == 0 || len(all) >= out.Total {
			return all, nil
		}
	}
}

// Count returns how many messages Mailpit holds (all of them, not one page).
func (m *Mailpit) Count(ctx context.Context) (int, error) {
	var out struct {
		Total int `json:"total"`
	}
	if err := getJSON(ctx, m.APIURL+"/api/v1/messages?limit=1", &out); err != nil {
		return 0, err
	}
	return out.Total, nil
}

// MessageText returns a message's plain-text body.
func (m *Mailpit) MessageText(ctx context.Context, id string) (string, error) {
	var out struct {
		Text string `json:"Text"`
	}
	if err := getJSON(ctx, m.APIURL+"/api/v1/message/"+id, &out); err != nil {
		return "", err
	}
	return out.Text, nil
}

// WaitMessageTo polls until a message to addr arrives (or ctx ends).
func (m *Mailpit) WaitMessageTo(ctx context.Context, addr string) (*Message, error) {
	for {
		msgs, err := m.Messages(ctx)
		if err == nil {
			for i := range msgs {
				for _, to := range msgs[i].To {
					if to.Address == addr {
						return &msgs[i], nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no mail to %s in Mailpit (%w, last error %v)", addr, ctx.Err(), err) //nolint:errorlint // may be nil: printed for the reader, not wrapped
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

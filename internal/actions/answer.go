package actions

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"

	client "github.com/ory/kratos-client-go"
)

// What the admin API answers is checked before it is used: whatever leads to something that is
// not Kratos (a proxy's error page, an app's catch-all page, a truncated answer) fails the
// operation with one line that says what was wrong, instead of being decoded as nothing (the
// generated client decodes an empty body or a JSON null as no value and no error, and XML as
// XML), shown whole, or taken as a success.

// ErrMalformed is matched with errors.Is: a success answer of the admin API that is not what
// Kratos sends.
var ErrMalformed = errors.New("malformed admin API answer")

// MalformedError is a success (2xx) answer of the admin API that is not Kratos's: not JSON, not
// valid JSON, JSON of the wrong shape, empty, or a delete answered with something else than 204.
type MalformedError struct {
	// Problem completes "the Kratos admin API's answer ...", e.g. "is not JSON (text/html)".
	Problem string
}

func (e *MalformedError) Error() string        { return "the Kratos admin API's answer " + e.Problem }
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

// maxQuoted bounds what an error quotes of an answer (one line of it).
const maxQuoted = 160

// mediaType is the media type of a Content-Type header ("" when it is missing), lower case,
// without parameters; a header that does not parse is returned as is (quoted in errors).
func mediaType(contentType string) string {
	if contentType == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return firstLine(contentType, 60)
	}
	return mt
}

// isJSON reports whether the generated client decodes a body of media type mt as JSON.
func isJSON(mt string) bool { return mt != "" && client.JsonCheck.MatchString(mt) }

// notJSON is the error for a success answer with a body that is not JSON.
func notJSON(contentType string) *MalformedError {
	mt := mediaType(contentType)
	if mt == "" {
		mt = "no Content-Type"
	}
	return &MalformedError{Problem: fmt.Sprintf("is not JSON (%s)", mt)}
}

// undecodable is the error for a success answer the generated client could not decode: body,
// and the decoder's message.
func undecodable(body []byte, decodeErr string) *MalformedError {
	var v interface{}
	if err := json.Unmarshal(body, &v); err != nil {
		return &MalformedError{Problem: fmt.Sprintf("is not valid JSON (%s)", firstLine(err.Error(), maxQuoted))}
	}
	return &MalformedError{Problem: fmt.Sprintf("is JSON of the wrong shape (%s)", shape(firstLine(decodeErr, maxQuoted)))}
}

var unmarshalType = regexp.MustCompile(`^json: cannot unmarshal (\w+)(?: \S+)? into Go (?:value|struct field (\S+)) of type (.+)$`)

// shape rewords encoding/json's type errors, which name Go types, in JSON's terms: "json: cannot
// unmarshal object into Go value of type []client.Identity" is "an object where an array belongs".
func shape(decodeErr string) string {
	m := unmarshalType.FindStringSubmatch(decodeErr)
	if m == nil {
		return decodeErr
	}
	want := "an object"
	switch goType := m[3]; {
	case strings.HasPrefix(goType, "[]"):
		want = "an array"
	case goType == "string":
		want = "a string"
	case goType == "bool":
		want = "a boolean"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "float"):
		want = "a number"
	}
	got := "a " + m[1]
	if m[1] == "array" || m[1] == "object" {
		got = "an " + m[1]
	}
	s := fmt.Sprintf("%s where %s belongs", got, want)
	if m[2] != "" {
		s += " (" + m[2] + ")"
	}
	return s
}

// missing is the error for a success answer that the generated client decoded as no value: an
// empty body, or JSON null. The client keeps the body it read in resp.Body.
func missing(op string, resp *http.Response) error {
	var body []byte
	if resp != nil && resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 64))
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return fmt.Errorf("%s: %w", op, &MalformedError{Problem: "is empty"})
	}
	return fmt.Errorf("%s: %w", op, &MalformedError{Problem: fmt.Sprintf("is JSON of the wrong shape (%s)", firstLine(string(body), 60))})
}

// noContent checks the answer to a delete, whose success Kratos answers 204 No Content: the
// generated client takes any 2xx as success and ignores the body, so a 200 with a page or some
// other JSON would otherwise pass for a deletion.
func noContent(op string, resp *http.Response) error {
	if resp == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	return fmt.Errorf("%s: %w", op, &MalformedError{Problem: fmt.Sprintf("has status %s, where Kratos answers 204 No Content", status(resp))})
}

func status(resp *http.Response) string {
	if resp.Status != "" {
		return resp.Status
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
}

// firstLine is the first non-blank line of s, trimmed, cut to at most max bytes (on a rune
// boundary); "…" marks that something was left out (more lines, or the rest of the line).
func firstLine(s string, max int) string {
	s = strings.TrimLeft(s, " \t\r\n")
	line, rest, more := strings.Cut(s, "\n")
	line = strings.TrimSpace(line)
	more = more && strings.TrimSpace(rest) != ""
	if len(line) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(line[cut]) {
			cut--
		}
		line, more = strings.TrimSpace(line[:cut]), true
	}
	if more {
		line += "…"
	}
	return line
}

var (
	htmlTitle = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)
	htmlDrop  = regexp.MustCompile(`(?is)<(script|style|head)[^>]*>.*?</(script|style|head)>`)
	htmlTag   = regexp.MustCompile(`(?s)<[^>]*>`)
	spaces    = regexp.MustCompile(`[ \t\r\f\v]+`)
)

// summary is one line saying what a non-JSON error answer says: the title of an HTML page (else
// its first line of text), the first line of any other text; "" when there is nothing to quote.
func summary(mt string, body []byte) string {
	s := string(body)
	if strings.Contains(mt, "html") || strings.HasPrefix(strings.TrimSpace(s), "<") {
		if m := htmlTitle.FindStringSubmatch(s); m != nil && strings.TrimSpace(m[1]) != "" {
			s = m[1]
		} else {
			s = htmlTag.ReplaceAllString(htmlDrop.ReplaceAllString(s, "\n"), "\n")
		}
		s = spaces.ReplaceAllString(s, " ")
	}
	if !utf8.ValidString(s) {
		return ""
	}
	return firstLine(s, maxQuoted)
}

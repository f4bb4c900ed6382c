package actions

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	client "github.com/ory/kratos-client-go"
)

// Import conflicts: an identity whose identifier (an email, a username) another identity of
// the target Kratos already has.
const (
	// OnConflictSkip counts it as skipped: a rerun of the same file is idempotent.
	OnConflictSkip = "skip"
	// OnConflictFail counts it as a failure.
	OnConflictFail = "fail"
)

// BatchLimit is the most identities Kratos v1.3 creates in one batch call.
const BatchLimit = 2000

// MaxImportLine bounds one line of an import file (one identity).
const MaxImportLine = 1 << 20

// ImportOptions say how ImportIdentities imports.
type ImportOptions struct {
	// Batch is the number of identities per batch call (0: 500; at most BatchLimit).
	Batch int
	// OnConflict is OnConflictSkip (the default) or OnConflictFail.
	OnConflict string
	// FailFast stops after the batch in which an identity failed.
	FailFast bool
	// Progress, when set, is called after each batch.
	Progress func(ImportStats)
	// Failure, when set, is called for each identity that failed.
	Failure func(ImportFailure)
}

// ImportStats count what an import did.
type ImportStats struct {
	Lines   int `json:"lines"`
	Created int `json:"created"`
	Skipped int `json:"skipped"`
	Failed  int `json:"failed"`
	// Dropped counts the credentials whose configs the admin API cannot import (second
	// factors): their owners enrol again.
	Dropped map[string]int `json:"dropped,omitempty"`
}

// ImportFailure is an identity that was not created: its line in the file, its identifier
// when known, and why.
type ImportFailure struct {
	Line       int    `json:"line"`
	Identifier string `json:"identifier,omitempty"`
	Reason     string `json:"reason"`
	// Conflict: an identity with the same identifier exists.
	Conflict bool `json:"conflict,omitempty"`
}

func (f ImportFailure) Error() string {
	if f.Identifier != "" {
		return fmt.Sprintf("line %d (%s): %s", f.Line, f.Identifier, f.Reason)
	}
	return fmt.Sprintf("line %d: %s", f.Line, f.Reason)
}

// ErrImportFailed: some identities were not imported (each was reported to Failure).
var ErrImportFailed = errors.New("identities not imported")

// importLine is one identity of an import file: an identity as ExportIdentities writes it, or
// as the admin API shows it; what Kratos sets itself (ids, timestamps) is ignored, and so are
// the recovery addresses, which Kratos derives from the traits as the schema says (as it
// derives the login identifiers). Verifiable addresses are imported: they carry whether the
// address was verified.
type importLine struct {
	SchemaID            string                 `json:"schema_id"`
	Traits              map[string]interface{} `json:"traits"`
	State               *string                `json:"state"`
	MetadataPublic      interface{}            `json:"metadata_public"`
	MetadataAdmin       interface{}            `json:"metadata_admin"`
	OrganizationID      *string                `json:"organization_id"`
	VerifiableAddresses []struct {
		Value      string     `json:"value"`
		Via        string     `json:"via"`
		Status     string     `json:"status"`
		Verified   bool       `json:"verified"`
		VerifiedAt *time.Time `json:"verified_at"`
	} `json:"verifiable_addresses"`
	Credentials map[string]struct {
		Identifiers []string               `json:"identifiers"`
		Config      map[string]interface{} `json:"config"`
	} `json:"credentials"`
}

// identifier names the identity in messages: its first password identifier, else its email
// trait.
func (l *importLine) identifier() string {
	if c, ok := l.Credentials["password"]; ok && len(c.Identifiers) > 0 {
		return c.Identifiers[0]
	}
	if s, ok := l.Traits["email"].(string); ok {
		return s
	}
	return ""
}

// body is the create body of the identity; dropped gets the credential types left behind.
func (l *importLine) body(dropped map[string]int) (*client.CreateIdentityBody, error) {
	if l.SchemaID == "" {
		return nil, errors.New("no schema_id")
	}
	if l.Traits == nil {
		return nil, errors.New("no traits (an object)")
	}
	b := client.NewCreateIdentityBody(l.SchemaID, l.Traits)
	b.State = l.State
	b.MetadataPublic, b.MetadataAdmin = l.MetadataPublic, l.MetadataAdmin
	if l.OrganizationID != nil {
		b.OrganizationId = *client.NewNullableString(l.OrganizationID)
	}
	for _, a := range l.VerifiableAddresses {
		status := a.Status
		if status == "" {
			status = "pending"
		}
		va := client.NewVerifiableIdentityAddress(status, a.Value, a.Verified, a.Via)
		va.VerifiedAt = a.VerifiedAt
		b.VerifiableAddresses = append(b.VerifiableAddresses, *va)
	}
	creds := &client.IdentityWithCredentials{}
	for t, c := range l.Credentials {
		switch t {
		case "password":
			cfg := &client.IdentityWithCredentialsPasswordConfig{}
			if s, ok := c.Config["hashed_password"].(string); ok && s != "" {
				cfg.HashedPassword = &s
			} else if s, ok := c.Config["password"].(string); ok && s != "" {
				cfg.Password = &s // a hand-made file may carry clear passwords: Kratos hashes them
			}
			if v, ok := c.Config["use_password_migration_hook"].(bool); ok {
				cfg.UsePasswordMigrationHook = &v
			}
			if cfg.HashedPassword != nil || cfg.Password != nil || cfg.UsePasswordMigrationHook != nil {
				creds.Password = &client.IdentityWithCredentialsPassword{Config: cfg}
			}
		case "oidc":
			var providers []client.IdentityWithCredentialsOidcConfigProvider
			ps, _ := c.Config["providers"].([]interface{})
			for _, p := range ps {
				m, _ := p.(map[string]interface{})
				provider, _ := m["provider"].(string)
				subject, _ := m["subject"].(string)
				if provider == "" || subject == "" {
					return nil, errors.New("an OIDC account without provider or subject")
				}
				pr := client.NewIdentityWithCredentialsOidcConfigProvider(provider, subject)
				if v, ok := m["use_auto_link"].(bool); ok {
					pr.UseAutoLink = &v
				}
				providers = append(providers, *pr)
			}
			if len(providers) > 0 {
				creds.Oidc = &client.IdentityWithCredentialsOidc{Config: &client.IdentityWithCredentialsOidcConfig{Providers: providers}}
			}
		default:
			// Kratos derives the identifiers of code, webauthn and passkey credentials from
			// the traits; a second factor's secret cannot be imported.
			if t == "totp" || t == "lookup_secret" || (t == "webauthn" && len(c.Config) > 0) {
				dropped[t]++
			}
		}
	}
	if creds.Password != nil || creds.Oidc != nil {
		b.Credentials = creds
	}
	return b, nil
}

type pending struct {
	line       int
	identifier string
	body       *client.CreateIdentityBody
}

// ImportIdentities reads identities from r, one JSON document per line (ExportIdentities'
// format; blank lines are skipped), and creates them in batches through PATCH
// /admin/identities. It streams: at most one batch is in memory. A line that is not an
// identity, and an identity Kratos refuses, is reported to opts.Failure with its line number
// and reason and the others go on (unless FailFast). An identity whose identifier another one
// already has is a conflict: skipped, or a failure with OnConflictFail. A batch Kratos refuses
// as a whole (one identity of it is invalid) is retried one identity at a time, so that each
// failure is named. The error is ErrImportFailed when some identities failed.
func ImportIdentities(ctx context.Context, c *client.APIClient, r io.Reader, opts ImportOptions) (ImportStats, error) {
	st := ImportStats{Dropped: map[string]int{}}
	if opts.Batch == 0 {
		opts.Batch = 500
	}
	if opts.Batch < 1 || opts.Batch > BatchLimit {
		return st, invalidf("batch size %d: want 1 to %d", opts.Batch, BatchLimit)
	}
	switch opts.OnConflict {
	case "":
		opts.OnConflict = OnConflictSkip
	case OnConflictSkip, OnConflictFail:
	default:
		return st, invalidf("on conflict %q: want %s or %s", opts.OnConflict, OnConflictSkip, OnConflictFail)
	}
	fail := func(f ImportFailure) {
		if f.Conflict && opts.OnConflict == OnConflictSkip {
			st.Skipped++
			return
		}
		st.Failed++
		if opts.Failure != nil {
			opts.Failure(f)
		}
	}

	br := bufio.NewReaderSize(r, 64<<10)
	batch := make([]pending, 0, opts.Batch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := importBatch(ctx, c, batch, &st, fail)
		batch = batch[:0]
		if opts.Progress != nil {
			opts.Progress(st)
		}
		return err
	}
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(br)
		if errors.Is(err, io.EOF) && len(line) == 0 {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			if errors.Is(err, errLineTooLong) {
				st.Lines++
				fail(ImportFailure{Line: lineNo, Reason: err.Error()})
				if opts.FailFast {
					break
				}
				continue
			}
			_ = flush()
			return st, fmt.Errorf("read line %d: %w", lineNo, err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		st.Lines++
		if p, f := parseImportLine(lineNo, line, st.Dropped); f != nil {
			fail(*f)
		} else {
			batch = append(batch, p)
		}
		if opts.FailFast && st.Failed > 0 {
			break
		}
		if len(batch) == opts.Batch {
			if err := flush(); err != nil {
				return st, err
			}
			if opts.FailFast && st.Failed > 0 {
				break
			}
		}
	}
	// The identities read before a --fail-fast stop are created: they precede the failure.
	if err := flush(); err != nil {
		return st, err
	}
	if len(st.Dropped) == 0 {
		st.Dropped = nil
	}
	if st.Failed > 0 {
		return st, fmt.Errorf("%d of %d identities: %w", st.Failed, st.Lines, ErrImportFailed)
	}
	return st, nil
}

// parseImportLine reads one line of an import file.
func parseImportLine(lineNo int, line []byte, dropped map[string]int) (pending, *ImportFailure) {
	var l importLine
	if err := json.Unmarshal(line, &l); err != nil {
		return pending{}, &ImportFailure{Line: lineNo, Reason: "not an identity in JSON: " + err.Error()}
	}
	body, err := l.body(dropped)
	if err != nil {
		return pending{}, &ImportFailure{Line: lineNo, Identifier: l.identifier(), Reason: err.Error()}
	}
	return pending{line: lineNo, identifier: l.identifier(), body: body}, nil
}

// PlanImport is the dry run of ImportIdentities: it reads r as the import would and counts
// what it would do, creating nothing. With c nil (a client dry run) it contacts nothing: every
// identity that parses counts as created. With c (a server dry run) it also checks, with
// read-only calls, that each identity's schema exists (once per schema) and whether its
// identifier is taken (one lookup per identity: a conflict). Both count an identifier that an
// earlier line of the file has as a conflict. Traits are checked against their schema by
// Kratos only when it creates the identity: a dry run does not see that failure.
func PlanImport(ctx context.Context, c *client.APIClient, r io.Reader, opts ImportOptions) (ImportStats, error) {
	st := ImportStats{Dropped: map[string]int{}}
	if opts.OnConflict == "" {
		opts.OnConflict = OnConflictSkip
	}
	fail := func(f ImportFailure) {
		if f.Conflict && opts.OnConflict == OnConflictSkip {
			st.Skipped++
			return
		}
		st.Failed++
		if opts.Failure != nil {
			opts.Failure(f)
		}
	}
	schemas := map[string]error{}
	firstLine := map[string]int{} // identifier -> the line that has it first
	br := bufio.NewReaderSize(r, 64<<10)
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(br)
		if errors.Is(err, io.EOF) && len(line) == 0 {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			if !errors.Is(err, errLineTooLong) {
				return st, fmt.Errorf("read line %d: %w", lineNo, err)
			}
			st.Lines++
			fail(ImportFailure{Line: lineNo, Reason: err.Error()})
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		st.Lines++
		p, f := parseImportLine(lineNo, line, st.Dropped)
		if f != nil {
			fail(*f)
			continue
		}
		if p.identifier != "" {
			if first, dup := firstLine[p.identifier]; dup {
				fail(ImportFailure{Line: lineNo, Identifier: p.identifier, Conflict: true, Reason: fmt.Sprintf("line %d has this identifier already", first)})
				continue
			}
			firstLine[p.identifier] = lineNo
		}
		if c != nil {
			schema := p.body.SchemaId
			serr, checked := schemas[schema]
			if !checked {
				_, resp, err := c.IdentityAPI.GetIdentitySchema(ctx, schema).Execute()
				if err != nil {
					err = apiError("get identity schema "+schema, resp, err)
					if statusOf(err) != http.StatusNotFound {
						return st, err
					}
					serr = fmt.Errorf("identity schema %q does not exist in this Kratos", schema)
				}
				schemas[schema] = serr
			}
			if serr != nil {
				fail(ImportFailure{Line: lineNo, Identifier: p.identifier, Reason: serr.Error()})
				continue
			}
			if p.identifier != "" {
				existing, err := findByEmail(ctx, c, p.identifier)
				if err != nil {
					return st, err
				}
				if len(existing) > 0 {
					fail(ImportFailure{Line: lineNo, Identifier: p.identifier, Conflict: true,
						Reason: "identity " + existing[0].Id + " has this identifier already"})
					continue
				}
			}
		}
		st.Created++
		if opts.Progress != nil && st.Lines%500 == 0 {
			opts.Progress(st)
		}
	}
	if len(st.Dropped) == 0 {
		st.Dropped = nil
	}
	if st.Failed > 0 {
		return st, fmt.Errorf("%d of %d identities: %w", st.Failed, st.Lines, ErrImportFailed)
	}
	return st, nil
}

var errLineTooLong = fmt.Errorf("longer than %d MiB: not one identity", MaxImportLine>>20)

// readLine reads one line, without its line ending; a line longer than MaxImportLine is
// consumed and refused.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			return line, err
		}
		if len(line)+len(chunk) > MaxImportLine {
			for isPrefix && err == nil {
				_, isPrefix, err = br.ReadLine()
			}
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		if !isPrefix {
			return line, nil
		}
	}
}

// importBatch creates the identities of batch in one call; when Kratos refuses the call as a
// whole (400: one of them is invalid), one call each. Only transport errors and Kratos's
// server errors are returned: they stop the import.
func importBatch(ctx context.Context, c *client.APIClient, batch []pending, st *ImportStats, fail func(ImportFailure)) error {
	patches := make([]client.IdentityPatch, len(batch))
	byPatch := make(map[string]int, len(batch))
	for i := range batch {
		id := uuid.NewString()
		patches[i] = client.IdentityPatch{Create: batch[i].body, PatchId: &id}
		byPatch[id] = i
	}
	op := fmt.Sprintf("import identities of lines %d to %d", batch[0].line, batch[len(batch)-1].line)
	res, resp, err := c.IdentityAPI.BatchPatchIdentities(ctx).PatchIdentitiesBody(client.PatchIdentitiesBody{Identities: patches}).Execute()
	if err != nil {
		err = apiError(op, resp, err)
		if s := statusOf(err); s >= 400 && s < 500 && s != http.StatusTooManyRequests {
			for _, p := range batch {
				if err := importOne(ctx, c, p, st, fail); err != nil {
					return err
				}
			}
			return nil
		}
		return err
	}
	if res == nil || len(res.Identities) != len(batch) {
		return fmt.Errorf("%s: the Kratos admin API answered for %d identities, not %d", op, len(res.GetIdentities()), len(batch))
	}
	created := map[string]pending{} // by the new identity's ID
	failed := false
	for _, r := range res.Identities {
		i, ok := byPatch[r.GetPatchId()]
		if !ok {
			return fmt.Errorf("%s: the Kratos admin API answered for an unknown patch %q", op, r.GetPatchId())
		}
		p := batch[i]
		if r.GetAction() == "create" && r.GetIdentity() != "" {
			created[r.GetIdentity()] = p
			continue
		}
		failed = true
		code, reason := patchError(r.Error)
		fail(ImportFailure{Line: p.line, Identifier: p.identifier, Reason: reason, Conflict: code == http.StatusConflict})
	}
	if !failed {
		st.Created += len(created)
		return nil
	}
	// Kratos v1.3.1 answers a batch in which some identity conflicts with an existing one by
	// reporting the others created, but it rolls back the whole transaction
	// (persister_identity.go returns the partial error from inside it): they are not. So
	// after a batch with a failure, the identities reported created are looked up, and those
	// that are not there are created one at a time.
	ids := make([]string, 0, len(created))
	for id := range created {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return created[ids[a]].line < created[ids[b]].line })
	for start := 0; start < len(ids); start += idsPerCall {
		chunk := ids[start:min(start+idsPerCall, len(ids))]
		found, resp, err := c.IdentityAPI.ListIdentities(ctx).Ids(chunk).PageSize(int64(len(chunk))).Execute()
		if err != nil {
			return apiError(op+": check the identities reported created", resp, err)
		}
		there := map[string]bool{}
		for _, f := range found {
			there[f.Id] = true
		}
		for _, id := range chunk {
			if there[id] {
				st.Created++
				continue
			}
			if err := importOne(ctx, c, created[id], st, fail); err != nil {
				return err
			}
		}
	}
	return nil
}

// importOne creates one identity (the fallback of a refused batch).
func importOne(ctx context.Context, c *client.APIClient, p pending, st *ImportStats, fail func(ImportFailure)) error {
	_, resp, err := c.IdentityAPI.CreateIdentity(ctx).CreateIdentityBody(*p.body).Execute()
	if err == nil {
		st.Created++
		return nil
	}
	err = apiError("create identity", resp, err)
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode >= 500 || ae.StatusCode == http.StatusTooManyRequests {
		return fmt.Errorf("line %d: %w", p.line, err)
	}
	reason := ae.Message
	if ae.Reason != "" && ae.Reason != ae.Message {
		reason += ": " + ae.Reason
	}
	if reason == "" {
		reason = ae.Status
	}
	fail(ImportFailure{Line: p.line, Identifier: p.identifier, Reason: reason, Conflict: ae.StatusCode == http.StatusConflict})
	return nil
}

// patchError reads the error of one identity of a batch answer (a Kratos error object).
func patchError(e interface{}) (code int, reason string) {
	m, ok := e.(map[string]interface{})
	if !ok {
		return 0, "Kratos did not create it and said no more"
	}
	if f, ok := m["code"].(float64); ok {
		code = int(f)
	}
	var parts []string
	for _, k := range []string{"message", "reason"} {
		if s, ok := m[k].(string); ok && s != "" && !slicesContains(parts, s) {
			parts = append(parts, firstLine(s, maxQuoted))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "error "+strconv.Itoa(code))
	}
	return code, strings.Join(parts, ": ")
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

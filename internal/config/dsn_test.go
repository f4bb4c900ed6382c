package config

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Kratos's Postgres driver quotes a connection URL it cannot parse in its error, password
// included, and Kratos logs that error on every retry. This canary keeps the reason for
// checkKratosDSN in sight: if pgx ever stops doing it, the check is merely helpful.
func TestPgxErrorQuotesUnparsableDSN(t *testing.T) {
	_, err := pgx.ParseConfig("postgres://kratos:N0t%Shared!@db:5432/kratos")
	if err == nil || !strings.Contains(err.Error(), "N0t%Shared!") {
		t.Logf("pgx no longer quotes the password of an unparsable URL: %v", err)
	}
}

// Every database Secret Render accepts is a DSN that Kratos's driver parses, and reads back
// with the Secret's host, credentials and database; every one it would choke on (or read as
// something else, e.g. part of the password as the port) is refused, naming the key and never
// any part of the value.
func TestPostgresDSNParsedAsKratosDoes(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys map[string]string
		key  string // the key the refusal names; "" when accepted
		// what the driver reads from an accepted DSN: host, port, user, password, database
		want []string
	}{
		// Refused: what pgx cannot parse, or parses into something else than was meant.
		{name: "dsn unescaped percent", keys: map[string]string{"dsn": "postgres://kratos:N0t%SENTINEL!@db:5432/kratos"}, key: "dsn"},
		{name: "dsn slash in password", keys: map[string]string{"dsn": "postgres://kratos:12/SENTINEL@db:5432/kratos"}, key: "dsn"},
		{name: "dsn question mark in password", keys: map[string]string{"dsn": "postgres://kratos:12?SENTINEL@db/kratos"}, key: "dsn"},
		{name: "dsn hash in password", keys: map[string]string{"dsn": "postgres://kratos:12#SENTINEL@db/kratos"}, key: "dsn"},
		{name: "dsn bad port", keys: map[string]string{"dsn": "postgres://kratos:SENTINEL@db:99999/kratos"}, key: "dsn"},
		{name: "dsn bad bracket", keys: map[string]string{"dsn": "postgres://kratos:SENTINEL@[::1/kratos"}, key: "dsn"},
		{name: "dsn bad sslmode", keys: map[string]string{"dsn": "postgres://kratos:SENTINEL@db/kratos?sslmode=sometimes"}, key: "dsn"},
		{name: "dsn bad connect_timeout", keys: map[string]string{"dsn": "postgres://kratos:SENTINEL@db/kratos?connect_timeout=soon"}, key: "dsn"},
		{name: "dsn bad statement cache", keys: map[string]string{"dsn": "postgres://kratos:SENTINEL@db/kratos?statement_cache_capacity=x"}, key: "dsn"},
		{name: "dsn bad min_read_buffer_size", keys: map[string]string{"dsn": "postgres://kratos:SENTINEL@db/kratos?min_read_buffer_size=x"}, key: "dsn"},
		{name: "dsn bad query escape", keys: map[string]string{"dsn": "postgres://kratos:SENTINEL@db/kratos?application_name=%zz"}, key: "dsn"},
		{name: "dsn password in query", keys: map[string]string{"dsn": "postgres://kratos@db/kratos?password=SENTINEL"}, key: "dsn"},
		{name: "dsn two schemes cockroach", keys: map[string]string{"dsn": "cockroach://kratos:SENTINEL://x@db/kratos"}, key: "dsn"},
		{name: "uri unescaped percent", keys: map[string]string{"uri": "postgresql://app:N0t%SENTINEL@db:5432/app"}, key: "uri"},
		{name: "uri slash in password", keys: map[string]string{"uri": "postgresql://app:12/SENTINEL@db:5432/app"}, key: "uri"},
		{name: "host with slash", keys: composed("db/SENTINEL"), key: "host"},
		{name: "host with port", keys: composed("db:5433"), key: "host"},
		{name: "host with userinfo", keys: composed("u:SENTINEL@db"), key: "host"},
		{name: "host with space", keys: composed("db SENTINEL"), key: "host"},
		{name: "host list", keys: composed("db1,db2"), key: "host"},
		{name: "host unclosed bracket", keys: composed("[::1"), key: "host"},
		{name: "host IPv6 zone", keys: composed("fe80::1%eth0"), key: "host"},
		{name: "host label too long", keys: composed(strings.Repeat("a", 64) + ".example.com"), key: "host"},
		{name: "host leading hyphen", keys: composed("-db"), key: "host"},

		// Accepted.
		{name: "dsn", keys: map[string]string{"dsn": "postgres://kratos:p%25ss%2Fw%40rd@db.ns.svc:6432/kratos?sslmode=require"},
			want: []string{"db.ns.svc", "6432", "kratos", "p%ss/w@rd", "kratos"}},
		{name: "dsn at sign in password", keys: map[string]string{"dsn": "postgres://kratos:p@ss@db/kratos"},
			want: []string{"db", "5432", "kratos", "p@ss", "kratos"}},
		{name: "dsn pool options", keys: map[string]string{"dsn": "postgresql://kratos:pw@db/kratos?max_conns=20&max_idle_conns=4&sslmode=disable"},
			want: []string{"db", "5432", "kratos", "pw", "kratos"}},
		{name: "dsn cockroach", keys: map[string]string{"dsn": "cockroach://kratos:pw@crdb:26257/kratos?sslmode=verify-full"},
			want: []string{"crdb", "26257", "kratos", "pw", "kratos"}},
		{name: "dsn file parameters", keys: map[string]string{"dsn": "postgres://kratos:pw@db/kratos?sslmode=verify-full&sslrootcert=/etc/ssl/certs/db-ca.crt"},
			want: []string{"db", "5432", "kratos", "pw", "kratos"}},
		{name: "uri CloudNativePG", keys: map[string]string{"uri": "postgresql://app:s3cr%2Ft@c-rw.ns:5432/app"},
			want: []string{"c-rw.ns", "5432", "app", "s3cr/t", "app"}},
		{name: "host name", keys: composed("DB-1.ns.svc.cluster.local."), want: []string{"DB-1.ns.svc.cluster.local.", "5432", "kratos", "p@ss:w/rd?#% $(X)", "kratos@db"}},
		{name: "host IPv4", keys: composed("10.0.0.7"), want: []string{"10.0.0.7", "5432", "kratos", "p@ss:w/rd?#% $(X)", "kratos@db"}},
		{name: "host IPv6", keys: composed("fd00::7"), want: []string{"fd00::7", "5432", "kratos", "p@ss:w/rd?#% $(X)", "kratos@db"}},
		{name: "host IPv6 in brackets", keys: composed("[fd00::7]"), want: []string{"fd00::7", "5432", "kratos", "p@ss:w/rd?#% $(X)", "kratos@db"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn, err := postgresDSN(secretSource(t, "pg", tc.keys))
			if tc.key != "" {
				if err == nil {
					t.Fatalf("accepted; Kratos's driver would read %s", describeDSN(dsn))
				}
				msg := err.Error()
				t.Log(msg)
				var ie *InputError
				if !errors.As(err, &ie) || ie.Name != "pg" || ie.Key != tc.key {
					t.Errorf("error does not name Secret pg key %s: %#v", tc.key, err)
				}
				for _, v := range []string{tc.keys[tc.key], tc.keys["password"]} {
					if v != "" && strings.Contains(msg, v) {
						t.Errorf("message holds the value %q", v)
					}
				}
				if strings.Contains(msg, "SENTINEL") {
					t.Errorf("message holds part of the password: %q", msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// As Kratos reads it: pop hands a cockroach:// URL to pgx as postgres://. (The CA file
			// is in Kratos's image, not here: leave it out.)
			c, err := pgx.ParseConfig(strings.Replace(strings.Replace(dsn, "cockroach://", "postgres://", 1), "&sslrootcert=/etc/ssl/certs/db-ca.crt", "", 1))
			if err != nil {
				t.Fatalf("pgx cannot parse the rendered DSN: %v", err)
			}
			got := []string{c.Host, strconv.Itoa(int(c.Port)), c.User, c.Password, c.Database}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("driver reads %q, want %q", got, tc.want)
			}
		})
	}
}

// composed is a database Secret in discrete keys with the given host.
func composed(host string) map[string]string {
	return map[string]string{"host": host, "username": "kratos", "password": "p@ss:w/rd?#% $(X)", "dbname": "kratos@db"}
}

func describeDSN(dsn string) string {
	c, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "nothing (it fails to parse)"
	}
	return "host " + c.Host + " port " + strconv.Itoa(int(c.Port)) + " database " + c.Database
}

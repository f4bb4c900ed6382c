package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kratos-injector/kratos-injector/internal/actions"
	"github.com/kratos-injector/kratos-injector/internal/actions/kratostest"
	"github.com/kratos-injector/kratos-injector/internal/golden"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance/clustertest"
	"github.com/kratos-injector/kratos-injector/internal/testbed"
)

// TestMigrateStatus: the real Kratos v1.3.1 migrates a real PostgreSQL; the migrations it
// applied are exactly the plugin's list (go test -update rewrites it). `migrate --status`
// then reads that database through the database Secret of the instance's pods and a
// port-forward to the pod behind the Service its DSN names (a kwok pod whose port leads to the
// Postgres): nothing pending; two versions removed from schema_migration are listed pending;
// an empty database has everything pending.
func TestMigrateStatus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pg, err := cluster.Bed.StartPostgres(testbed.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)
	db, err := pg.NewDatabase(ctx, "status", "")
	if err != nil {
		t.Fatal(err)
	}

	// The real binary migrates it, as `kubectl kratos migrate` runs it.
	bin, err := kratostest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "migrate", "sql", "-e", "--yes")
	cmd.Env = append(os.Environ(), "DSN="+db.DSN("127.0.0.1"), "LOG_FORMAT=json", "LOG_LEVEL=info", "SQA_OPT_OUT=true")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("kratos migrate: %v\n%s", err, out.String())
	}
	var list strings.Builder
	list.WriteString("# The migrations Kratos v1.3.1 applies to an empty PostgreSQL database, in order: what\n" +
		"# `kubectl kratos migrate --status` compares schema_migration with. Written by\n" +
		"# `go test ./internal/cli -run TestMigrateStatus -update` from the real binary's log.\n")
	n := 0
	for _, l := range strings.Split(out.String(), "\n") {
		var e struct{ Msg, Version, MigrationName string }
		var raw map[string]interface{}
		if json.Unmarshal([]byte(l), &raw) != nil {
			continue
		}
		e.Msg, _ = raw["msg"].(string)
		e.Version, _ = raw["version"].(string)
		e.MigrationName, _ = raw["migration_name"].(string)
		if strings.HasPrefix(e.Msg, "> ") && strings.HasSuffix(e.Msg, " applied successfully") {
			fmt.Fprintf(&list, "%s %s\n", e.Version, e.MigrationName)
			n++
		}
	}
	if n < 100 {
		t.Fatalf("kratos migrate logged %d applied migrations:\n%.3000s", n, out.String())
	}
	golden.Compare(t, filepath.Join("..", "actions", actions.MigrationListPath("v1.3.1", "postgres")), "Kratos v1.3.1's Postgres migrations", []byte(list.String()))
	known, ok := actions.KnownMigrations("v1.3.1", "postgres")
	if !ok || len(known) != n {
		t.Fatalf("the plugin knows %d migrations (%v), the binary applied %d", len(known), ok, n)
	}

	// The cluster: Service pg-rw -> pod pg-0 (kwok), whose port 5432 leads to the Postgres; the
	// instance's pod names the database Secret, whose DSN names the Service.
	ns := cluster.Namespace(t, "status")
	pgPod := cluster.RunPod(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pg-0", Namespace: ns, Labels: map[string]string{"app": "pg"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres", Image: testbed.BusyboxImage}}}})
	cluster.Forward(t, pgPod, 5432, fmt.Sprintf("127.0.0.1:%d", pg.Port))
	cluster.Apply(t, ns, `apiVersion: v1
kind: Service
metadata: {name: pg-rw}
spec:
  selector: {app: pg}
  ports: [{name: postgres, port: 5432, targetPort: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: pg-rw-1, labels: {kubernetes.io/service-name: pg-rw}}
addressType: IPv4
ports: [{name: postgres, port: 5432, protocol: TCP}]
endpoints:
- addresses: [10.0.0.9]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: pg-0, namespace: `+ns+`}
`)
	setSecret := func(d testbed.Database) {
		u := url.URL{Scheme: "postgres", User: url.UserPassword(d.User, d.Password), Host: "pg-rw." + ns + ".svc:5432", Path: "/" + d.Name, RawQuery: "sslmode=disable&max_conns=5"}
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, Data: map[string][]byte{"dsn": []byte(u.String())}}
		cs := cluster.Client.CoreV1().Secrets(ns)
		if _, err := cs.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			if _, err := cs.Create(ctx, s, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	setSecret(db)
	p := clustertest.Pod(ns, "web-1", "web")
	p.Annotations[inject.AnnotationDatabaseSecret] = "db"
	cluster.RunPod(t, p)
	kc := cluster.Kubeconfig(t, "admin", ns)

	r := kk(t, "", "--kubeconfig", kc, "migrate", "--status").ok(t, "migrate --status")
	if want := fmt.Sprintf("Database %s of instance web: %d of %d migrations of Kratos v1.3.1 applied, 0 pending.", db.Name, n, n); !strings.Contains(r.stdout, want) ||
		strings.Contains(r.stdout, "PENDING") {
		t.Fatalf("migrate --status on a migrated database:\n%s\nwant %q (stderr %s)", r.stdout, want, r.stderr)
	}

	// Two migrations forgotten: listed, by version and name.
	if _, err := pg.SQL(ctx, db.Name, fmt.Sprintf("DELETE FROM schema_migration WHERE version IN ('%s', '%s')", known[5].Version, known[n-1].Version)); err != nil {
		t.Fatal(err)
	}
	r = kk(t, "", "--kubeconfig", kc, "migrate", "--status").ok(t, "migrate --status")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) < 4 || strings.Join(strings.Fields(lines[0]), " ") != "PENDING NAME" ||
		strings.Join(strings.Fields(lines[1]), " ") != known[5].Version+" "+known[5].Name ||
		strings.Join(strings.Fields(lines[2]), " ") != known[n-1].Version+" "+known[n-1].Name ||
		!strings.Contains(r.stdout, fmt.Sprintf("%d of %d migrations of Kratos v1.3.1 applied, 2 pending", n-2, n)) {
		t.Fatalf("migrate --status with two pending:\n%s", r.stdout)
	}
	r = kk(t, "", "--kubeconfig", kc, "migrate", "--status", "-o", "json").ok(t, "migrate --status -o json")
	var st struct {
		Pending []actions.Migration `json:"pending"`
		Applied int                 `json:"applied"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Pending) != 2 || st.Applied != n-2 {
		t.Fatalf("migrate --status -o json: %v\n%s", err, r.stdout)
	}

	// An empty database: everything pending.
	empty, err := pg.NewDatabase(ctx, "empty", "")
	if err != nil {
		t.Fatal(err)
	}
	setSecret(empty)
	r = kk(t, "", "--kubeconfig", kc, "migrate", "--status").ok(t, "migrate --status")
	if !strings.Contains(r.stdout, fmt.Sprintf("0 of %d migrations of Kratos v1.3.1 applied, %d pending", n, n)) {
		t.Fatalf("migrate --status on an empty database:\n%.500s", r.stdout)
	}
	// SQLite lives in the pods: nothing to read, and said so.
	lite := clustertest.Pod(ns, "lite-1", "lite")
	cluster.RunPod(t, lite)
	r = kk(t, "", "--kubeconfig", kc, "--instance", "lite", "migrate", "--status").ok(t, "migrate --status (sqlite)")
	if !strings.Contains(r.stdout, "Instance lite keeps its database in SQLite inside each pod") {
		t.Fatalf("migrate --status of a SQLite instance: %q", r.stdout)
	}

	// Nothing was written: the empty database is still empty.
	if got, err := pg.SQL(ctx, empty.Name, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"); err != nil || strings.TrimSpace(got) != "0" {
		t.Fatalf("tables in the empty database after --status: %q, %v", got, err)
	}
}

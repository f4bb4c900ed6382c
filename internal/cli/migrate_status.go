package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kratos-injector/kratos-injector/internal/actions"
	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/inject"
	"github.com/kratos-injector/kratos-injector/internal/instance"
)

// migrate --status reads the instance's database the way Kratos decides what to migrate: the
// versions in its schema_migration table against the migrations the Kratos release carries
// (actions.KnownMigrations). The database is the one the pods' database Secret names, read
// through the API (RBAC: get on that Secret) and reached as `kubectl port-forward svc/NAME`
// reaches a Service when its host is one of the cluster's Services (get services, list
// endpointslices, create pods/portforward in its namespace), directly otherwise. Nothing is
// written to the database: one SELECT.

// knownKratosVersion is the release whose migrations the plugin lists.
const knownKratosVersion = "v1.3.1"

// migrateStatus is what -o json|yaml prints.
type migrateStatus struct {
	Instance      string `json:"instance"`
	Pod           string `json:"pod"`
	KratosVersion string `json:"kratosVersion"`
	Database      string `json:"database"`
	actions.MigrationState
}

func (o *MigrateOptions) runStatus(ctx context.Context, k *kube, in *instance.Instance) error {
	if len(in.Pods) == 0 {
		return fmt.Errorf("instance %s has no injected pod", in.Name)
	}
	pod := &in.Pods[0]
	if p, err := in.KratosRunningPod(); err == nil {
		pod = p
	}
	ann := pod.Annotations
	secret := ann[inject.AnnotationDatabaseSecret]
	if secret == "" || ann[inject.AnnotationDatabase] == config.DatabaseSQLite {
		fmt.Fprintf(o.g.Streams.Out, "Instance %s keeps its database in SQLite inside each pod: the %s init container migrates it "+
			"before Kratos starts (migrate: auto), so a pod that runs Kratos has nothing pending.\n", in.Name, inject.ContainerMigrate)
		return nil
	}
	version := imageTag(instance.KratosImage(pod))
	known, ok := actions.KnownMigrations(version, "postgres")
	if !ok {
		fmt.Fprintf(o.g.Streams.ErrOut, "Warning: pod %s runs Kratos %s; the plugin knows the migrations of Kratos %s and compares with those\n",
			pod.Name, orNone(version), knownKratosVersion)
		known, _ = actions.KnownMigrations(knownKratosVersion, "postgres")
	}

	s, err := k.clientset.CoreV1().Secrets(pod.Namespace).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("migrate --status reads the database Secret: %w", instance.APIError(err, "get", "secrets", pod.Namespace))
	}
	dsn, err := config.PostgresDSN(secret, s.Data)
	if err != nil {
		return err
	}
	cfg, err := config.PgxConfig(dsn)
	if err != nil {
		return fmt.Errorf("Secret %s: %w", secret, err)
	}
	where := fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
	fw, err := o.forwardToService(ctx, k, cfg.Host, int(cfg.Port), pod.Namespace)
	if err != nil {
		return err
	}
	if fw != nil {
		defer fw.Close()
		where += fmt.Sprintf(" (through a port-forward to pod %s/%s)", fw.Namespace, fw.Pod)
		cfg.Host, cfg.Port, cfg.Fallbacks = "127.0.0.1", uint16(fw.LocalPort), nil
	}
	cctx, cancel := context.WithTimeout(ctx, o.g.AdminTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to the database of instance %s at %s: %s", in.Name, where, pgError(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	applied, err := actions.AppliedMigrations(cctx, conn)
	if err != nil {
		return fmt.Errorf("database of instance %s at %s: %s", in.Name, where, pgError(err))
	}
	st := migrateStatus{Instance: in.Name, Pod: pod.Name, KratosVersion: version, Database: cfg.Database,
		MigrationState: actions.MigrationStatus(known, applied)}
	if o.Output.structured() {
		return o.Output.printStructured(o.g.Streams.Out, st)
	}
	w := o.g.Streams.Out
	if len(st.Pending) > 0 {
		rows := make([][]string, 0, len(st.Pending))
		for _, m := range st.Pending {
			rows = append(rows, []string{m.Version, m.Name})
		}
		if err := o.Output.printTable(w, []string{"PENDING", "NAME"}, rows); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "Database %s of instance %s: %d of %d migrations of Kratos %s applied, %d pending.\n",
		cfg.Database, in.Name, st.Applied, st.Known, knownIf(version), len(st.Pending))
	if len(st.Unknown) > 0 {
		fmt.Fprintf(w, "It also records %d migrations this Kratos does not have (a newer Kratos migrated it): %s\n",
			len(st.Unknown), strings.Join(st.Unknown, ", "))
	}
	if len(st.Pending) > 0 {
		fmt.Fprintf(w, "Run `kubectl kratos migrate --instance %s` to apply them.\n", in.Name)
	}
	return nil
}

func knownIf(version string) string {
	if _, ok := actions.KnownMigrations(version, "postgres"); ok {
		return version
	}
	return knownKratosVersion
}

// imageTag is the tag of an image reference ("" without one).
func imageTag(image string) string {
	image, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}
	return ""
}

// pgError is a connection or query error without anything the DSN holds beyond host and
// database (pgx's errors name user and database, never the password).
func pgError(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer within --admin-timeout"
	}
	return err.Error()
}

// forwardToService opens a port-forward to a pod behind the Service that host names in the
// cluster (NAME, NAME.NAMESPACE, NAME.NAMESPACE.svc[.DOMAIN]), as `kubectl port-forward
// svc/NAME` does: the Service's port, its EndpointSlices' ready pod and target port. It returns
// nil when host is not a Service of the cluster (an IP, an outside name, an ExternalName).
func (o *MigrateOptions) forwardToService(ctx context.Context, k *kube, host string, port int, podNS string) (*instance.Forward, error) {
	if net.ParseIP(host) != nil || host == "" {
		return nil, nil
	}
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	name, ns := parts[0], podNS
	switch {
	case len(parts) == 1:
	case len(parts) == 2 || (len(parts) >= 3 && parts[2] == "svc"):
		ns = parts[1]
	default:
		return nil, nil
	}
	svc, err := k.clientset.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("the database host %s may be a Service: %w", host, instance.APIError(err, "get", "services", ns))
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return nil, nil
	}
	portName, found := "", false
	for _, p := range svc.Spec.Ports {
		if int(p.Port) == port {
			portName, found = p.Name, true
		}
	}
	if !found {
		return nil, fmt.Errorf("Service %s/%s has no port %d (the database Secret's)", ns, name, port)
	}
	slices, err := k.clientset.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return nil, fmt.Errorf("Service %s/%s: %w", ns, name, instance.APIError(err, "list", "endpointslices", ns))
	}
	for _, sl := range slices.Items {
		target := 0
		for _, p := range sl.Ports {
			if p.Port != nil && (p.Name == nil && portName == "" || p.Name != nil && *p.Name == portName) {
				target = int(*p.Port)
			}
		}
		if target == 0 {
			continue
		}
		for _, e := range sl.Endpoints {
			if (e.Conditions.Ready != nil && !*e.Conditions.Ready) || e.TargetRef == nil || e.TargetRef.Kind != "Pod" {
				continue
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: e.TargetRef.Name, Namespace: ns}}
			fw, err := instance.PortForwardWithin(ctx, k.config, k.clientset, pod, target, o.g.AdminTimeout)
			if err != nil {
				return nil, fmt.Errorf("port-forward to the database (Service %s/%s, pod %s, port %s): %w", ns, name, pod.Name, strconv.Itoa(target), err)
			}
			return fw, nil
		}
	}
	return nil, fmt.Errorf("Service %s/%s (the database host) has no ready pod to port-forward to", ns, name)
}

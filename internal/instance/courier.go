package instance

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/inject"
)

// Courier describes who dispatches an instance's mail, from its newest pod's spec:
// CourierOff, CourierInProcess (SQLite: each pod's own database, its own in-process courier),
// or CourierGated (Postgres: the pod whose kratos-courier holds the database's courier lock).
const (
	CourierOff       = "off"
	CourierInProcess = "in-process"
	CourierGated     = "gated"
)

// CourierMode says how the pod's courier runs.
func CourierMode(p *corev1.Pod) string {
	spec, err := inject.ParseAnnotations(p.Annotations, "")
	switch {
	case err != nil:
		return ""
	case spec.Courier == config.CourierOff:
		return CourierOff
	case Container(p, inject.ContainerCourier) != nil:
		return CourierGated
	default:
		return CourierInProcess
	}
}

// CourierHolder asks, from inside pod (its kratos-courier container, through pods/exec), which
// pod holds the courier lock of the instance's database; "" if none does.
func CourierHolder(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, pod *corev1.Pod) (string, error) {
	var out, errOut bytes.Buffer
	err := Exec(ctx, cfg, cs, pod, inject.ContainerCourier, []string{inject.GatePath, "holder", "--config", inject.ConfigPath}, &out, &errOut)
	if err != nil {
		if msg := strings.TrimSpace(errOut.String()); msg != "" {
			return "", fmt.Errorf("%s: %w", msg, err)
		}
		return "", err
	}
	return strings.TrimSpace(out.String()), nil
}

// Package inject is the injection core: pod annotations -> validated config.Spec, Spec + Pod ->
// the pod with Kratos injected (Inject), the admission handler around it (Handler), and the
// offline injection of manifests behind `kubectl kratos inject -f` (InjectManifests). The
// webhook, the plugin and the tests all go through Inject: one code path per decision.
package inject

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/version"
)

// DefaultContainerAnnotation is kubectl's default container for logs and exec.
const DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// InjectorImageRepository is where releases publish the injector image.
const InjectorImageRepository = "ghcr.io/kratos-injector/kratos-injector"

// InjectorImageDigest is the digest (sha256:...) of the released image index of this version,
// stamped by `make release` into the binaries it ships (-ldflags -X), so that the plugin's
// `inject -f` default is the very image the release's install YAML pins. Empty in other builds.
var InjectorImageDigest = ""

// DefaultInjectorImage is the render init container's image when Options leave it empty: this
// version's released image, repository:version[@digest].
var DefaultInjectorImage = defaultInjectorImage(version.Version, InjectorImageDigest)

func defaultInjectorImage(v, digest string) string {
	if digest != "" {
		return InjectorImageRepository + ":" + v + "@" + digest
	}
	return InjectorImageRepository + ":" + v
}

// Options are the injector-wide settings (the webhook's flags).
type Options struct {
	// InjectorImage runs the kratos-config init container (`webhook render`).
	InjectorImage string
	// KratosImage is the Kratos image when the pod has no image annotation.
	KratosImage string
	// Version is the injector version recorded in the status annotation.
	Version string
}

func (o Options) withDefaults() Options {
	if o.InjectorImage == "" {
		o.InjectorImage = DefaultInjectorImage
	}
	if o.KratosImage == "" {
		o.KratosImage = DefaultKratosImage
	}
	if o.Version == "" {
		o.Version = version.Version
	}
	return o
}

// Injector injects pods with fixed Options; it is safe for concurrent use.
type Injector struct {
	opts  Options
	specs specCache
}

// NewInjector returns an Injector, filling the Options' empty fields with defaults.
func NewInjector(opts Options) *Injector { return &Injector{opts: opts.withDefaults()} }

// SkipReason says why a pod reaching admission is left alone: "not-labelled" (no opt-in label
// "true"), "already-injected" (it carries the status), or "" when it must be injected.
func SkipReason(pod *corev1.Pod) string {
	if pod.Labels[LabelInject] != "true" {
		return ReasonNotLabelled
	}
	if _, ok := pod.Annotations[AnnotationStatus]; ok {
		return ReasonAlreadyInjected
	}
	return ""
}

// Result is what Inject made of a pod.
type Result struct {
	// Pod is the injected copy of the pod; an unchanged copy when the pod carried
	// AnnotationStatus already.
	Pod *corev1.Pod
	// Spec is the spec parsed from the pod's annotations, which Pod runs; nil when the pod was
	// injected already (its annotations are not read then).
	Spec *config.Spec
	// Warnings are the admission warnings the spec deserves for this pod (see Warnings).
	Warnings []string

	parsed *parsedSpec // the Injector's cache entry for the pod's settings; nil when injected already
}

// Inject returns a copy of pod with Kratos injected (see docs/architecture.md, 'What gets injected'); pod itself is never modified.
// A pod that already carries AnnotationStatus is returned unchanged. Bad settings or clashes
// with the pod's own containers, volumes or ports return an *InvalidError listing every
// problem; nothing is half-applied. Nothing injected depends on the pod's namespace, which a
// controller's pod may not carry yet at admission, so it is not asked for.
func Inject(pod *corev1.Pod, opts Options) (*Result, error) {
	return NewInjector(opts).Inject(pod)
}

// Inject is the package-level Inject with the Injector's Options.
func (in *Injector) Inject(pod *corev1.Pod) (*Result, error) { return in.inject(pod, false) }

// inject is Inject. With shared, the injected containers and volumes of Result.Pod are those
// cached for the pod's settings and grace period, built once and shared by every such Result:
// for the handler, which only reads Result.Pod to write the patch, and so does not rebuild
// them for every pod of a ReplicaSet (they were three quarters of Inject's allocations).
// Without, they are built for this Result alone, which the caller may change.
func (in *Injector) inject(pod *corev1.Pod, shared bool) (*Result, error) {
	if _, ok := pod.Annotations[AnnotationStatus]; ok {
		return &Result{Pod: pod.DeepCopy()}, nil
	}
	var problems []Problem
	spec, parsed, err := in.parse(pod.Annotations)
	if err != nil {
		var inv *InvalidError
		if !errors.As(err, &inv) {
			return nil, err
		}
		problems = append(problems, inv.Problems...)
	}
	instance, err := InstanceName(pod)
	if err != nil {
		problems = append(problems, Problem{LabelInstance, err.Error()})
	}
	problems = append(problems, conflicts(pod)...)
	if len(problems) > 0 {
		return nil, &InvalidError{Problems: problems}
	}

	preStop := preStopSleep(pod.Spec.TerminationGracePeriodSeconds)
	var parts *injectedParts
	if shared {
		if parts = parsed.injected.Load(); parts == nil || parts.preStop != preStop {
			// From the cache entry's own spec, which no caller holds.
			parts = in.buildParts(parsed.spec, parsed.specJSON, preStop)
			parsed.injected.Store(parts)
		}
	} else {
		parts = in.buildParts(spec, parsed.specJSON, preStop)
	}

	out := pod.DeepCopy()
	ps := &out.Spec
	// New slices: parts' own may be shared.
	ps.InitContainers = append(append(make([]corev1.Container, 0, len(parts.init)+len(ps.InitContainers)), parts.init...), ps.InitContainers...)
	if len(parts.main) > 0 {
		if len(ps.Containers) > 0 && out.Annotations[DefaultContainerAnnotation] == "" {
			// Kratos goes first so it starts first; kubectl logs/exec keep defaulting to the app.
			setMap(&out.Annotations, DefaultContainerAnnotation, ps.Containers[0].Name)
		}
		ps.Containers = append(append(make([]corev1.Container, 0, len(parts.main)+len(ps.Containers)), parts.main...), ps.Containers...)
	}
	ps.Volumes = append(ps.Volumes, parts.vols...)

	setMap(&out.Annotations, AnnotationStatus, Status{Version: in.opts.Version, SpecHash: specHash(parsed.specJSON)}.String())
	setMap(&out.Labels, LabelInstance, instance)
	return &Result{Pod: out, Spec: spec, Warnings: Warnings(pod, spec), parsed: parsed}, nil
}

// injectedParts are the containers and volumes Inject adds to a pod, which depend on its
// settings, its grace period (Kratos's preStop sleep) and the Injector's Options only: init go
// before the pod's init containers, main before its containers, vols after its volumes.
type injectedParts struct {
	init, main []corev1.Container
	vols       []corev1.Volume
	preStop    int64
}

func (in *Injector) buildParts(spec *config.Spec, specJSON string, preStop int64) *injectedParts {
	vols, inputMounts := volumes(spec)
	ours := make([]corev1.Container, 0, 5)
	ours = append(ours, renderContainer(spec, in.opts.InjectorImage, specJSON, inputMounts))
	if spec.Migrate == config.MigrateAuto {
		ours = append(ours, migrateContainer(spec))
	}
	kratos := []corev1.Container{kratosContainer(spec, preStop)}
	if gatedCourier(spec) {
		kratos = append(kratos, courierContainer(spec))
	}
	if spec.Metrics == config.MetricsOn {
		kratos = append(kratos, metricsContainer(spec, in.opts.InjectorImage))
	}
	withoutToken(ours)
	withoutToken(kratos)
	if spec.Sidecar == config.SidecarNative {
		// After render and migrate, before the app's init containers: those may already use Kratos.
		return &injectedParts{init: append(ours, kratos...), vols: vols, preStop: preStop}
	}
	return &injectedParts{init: ours, main: kratos, vols: vols, preStop: preStop}
}

func setMap(m *map[string]string, k, v string) {
	if *m == nil {
		*m = make(map[string]string, 1)
	}
	(*m)[k] = v
}

// conflicts reports what in the pod would clash with the injected parts. Our names are
// reserved whatever the spec, so this needs no valid spec and joins the annotation problems
// in a single denial.
func conflicts(pod *corev1.Pod) []Problem {
	var problems []Problem
	ps := &pod.Spec
	if len(ps.Containers) == 0 {
		problems = append(problems, Problem{"spec.containers", "the pod has no containers"})
	}
	if ps.HostNetwork {
		problems = append(problems, Problem{"spec.hostNetwork", "Kratos cannot be injected into a host-network pod: its ports, and its localhost-only admin API, would be the node's"})
	}
	check := func(field string, cs []corev1.Container) {
		for i := range cs {
			c := &cs[i]
			switch c.Name {
			case ContainerConfig, ContainerMigrate, ContainerKratos, ContainerCourier, ContainerMetrics:
				problems = append(problems, Problem{fmt.Sprintf("%s[%s]", field, c.Name), "container name is reserved for the injected Kratos: rename the container"})
			}
			for _, p := range c.Ports {
				if p.ContainerPort == config.PublicPort || p.ContainerPort == config.AdminPort || p.ContainerPort == config.MetricsPort ||
					p.Name == PortNamePublic || p.Name == PortNameAdmin || p.Name == PortNameMetrics {
					problems = append(problems, Problem{fmt.Sprintf("%s[%s].ports", field, c.Name),
						fmt.Sprintf("port %d (%s) clashes with Kratos's ports %d, %d and %d (%s, %s, %s)", p.ContainerPort, p.Name,
							config.PublicPort, config.AdminPort, config.MetricsPort, PortNamePublic, PortNameAdmin, PortNameMetrics)})
				}
			}
		}
	}
	check("spec.initContainers", ps.InitContainers)
	check("spec.containers", ps.Containers)
	for _, v := range ps.Volumes {
		if v.Name == VolumeConfig || v.Name == VolumeData || v.Name == VolumeTmp || v.Name == VolumeBin || v.Name == VolumeNoToken ||
			strings.HasPrefix(v.Name, secretVolumePrefix) || strings.HasPrefix(v.Name, configMapVolumePrefix) {
			problems = append(problems, Problem{fmt.Sprintf("spec.volumes[%s]", v.Name), "volume name is reserved for the injected Kratos (kratos-config, kratos-data, kratos-tmp, kratos-bin, kratos-no-token, kratos-secret-*, kratos-cm-*): rename the volume"})
		}
	}
	return problems
}

// Status is the content of AnnotationStatus.
type Status struct {
	Version  string
	SpecHash string
}

// String is the annotation value: "injected; version=<v>; spec=<hash>". Plain text rather
// than JSON so `kubectl get pod -o yaml` reads well; ParseStatus reads it back.
func (s Status) String() string {
	return "injected; version=" + s.Version + "; spec=" + s.SpecHash
}

// ParseStatus reads an AnnotationStatus value.
func ParseStatus(v string) (Status, error) {
	parts := strings.Split(v, ";")
	if strings.TrimSpace(parts[0]) != "injected" {
		return Status{}, fmt.Errorf("status %s: does not start with injected", quote(v))
	}
	var s Status
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch k {
		case "version":
			s.Version = val
		case "spec":
			s.SpecHash = val
		}
	}
	return s, nil
}

// specHash identifies a spec: pods of one instance with different hashes run different configs.
func specHash(specJSON string) string {
	sum := sha256.Sum256([]byte(specJSON))
	return hex.EncodeToString(sum[:8])
}

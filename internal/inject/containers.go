package inject

import (
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kratos-injector/kratos-injector/internal/config"
)

// Names of the injected containers and ports.
const (
	ContainerConfig  = "kratos-config"
	ContainerMigrate = "kratos-migrate"
	ContainerKratos  = "kratos"
	// ContainerCourier runs the courier gate (internal/courier) with Postgres.
	ContainerCourier = "kratos-courier"
	// ContainerMetrics serves Kratos's metrics on the pod's IP (webhook metrics-proxy).
	ContainerMetrics = "kratos-metrics"

	PortNamePublic = "kratos-public"
	PortNameAdmin  = "kratos-admin"
	// PortNameMetrics is the port Prometheus scrapes (path /metrics).
	PortNameMetrics = "kratos-metrics"

	// RunAsUser is the uid of every injected container. It is set explicitly because the
	// official Kratos image's USER is a name (ory), which the kubelet cannot check against
	// runAsNonRoot; and all injected containers share it, so the files the render container
	// writes (mode 0600 is fine) are readable by Kratos without touching the pod's fsGroup.
	// 65532 is distroless's "nonroot", the injector image's own user.
	RunAsUser int64 = 65532
)

// RenderCommand is the kratos-config init container's command: the injector image must have
// the webhook binary on its PATH.
var RenderCommand = []string{"webhook", "render"}

// GateSource is where the injector image carries the courier gate, beside webhook; the render
// container copies it into the bin volume, from which the kratos-courier container (in the
// Kratos image) runs it.
const GateSource = "/usr/local/bin/courier-gate"

// GatePath is the courier gate in the kratos-courier container.
var GatePath = path.Join(binDir, "courier-gate")

// ConfigPath is where Kratos reads the rendered config.
var ConfigPath = path.Join(config.DefaultConfigDir, config.ConfigFile)

// Resources of the render init container: it reads a few files and writes one.
var (
	renderCPURequest    = resource.MustParse("10m")
	renderMemoryRequest = resource.MustParse("32Mi")
	renderMemoryLimit   = resource.MustParse("128Mi")
)

func securityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To(RunAsUser),
		RunAsGroup:               ptr.To(RunAsUser),
		ReadOnlyRootFilesystem:   ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// renderContainer is kratos-config: `webhook render` with everything it needs in its own
// command, args and mounts, so running it by hand with those mounts reproduces the config.
func renderContainer(s *config.Spec, injectorImage, specJSON string, inputMounts []corev1.VolumeMount) corev1.Container {
	mounts := make([]corev1.VolumeMount, 0, 3+len(inputMounts))
	mounts = append(mounts,
		corev1.VolumeMount{Name: VolumeConfig, MountPath: config.DefaultConfigDir},
		corev1.VolumeMount{Name: VolumeTmp, MountPath: tmpDir},
	)
	if needsGate(s) {
		mounts = append(mounts, corev1.VolumeMount{Name: VolumeBin, MountPath: binDir})
	}
	mounts = append(mounts, inputMounts...)
	c := corev1.Container{
		Name:    ContainerConfig,
		Image:   injectorImage,
		Command: slices.Clone(RenderCommand),
		Args: []string{
			"--spec=" + kubeletLiteral(specJSON),
			"--inputs=" + kubeletLiteral(config.DefaultInputDir),
			"--out=" + kubeletLiteral(config.DefaultConfigDir),
			"--data-dir=" + kubeletLiteral(config.DefaultDataDir),
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: renderCPURequest.DeepCopy(), corev1.ResourceMemory: renderMemoryRequest.DeepCopy()},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: renderMemoryLimit.DeepCopy()},
		},
		VolumeMounts: mounts,
		// `webhook render` writes its one secret-free error line to the termination log itself,
		// which the pod's status shows; the log is never copied there (see terminationPolicy).
		TerminationMessagePolicy: terminationPolicy,
		SecurityContext:          securityContext(),
	}
	if needsGate(s) {
		c.Args = append(c.Args, "--install-courier-gate="+kubeletLiteral(GateSource)+":"+kubeletLiteral(GatePath))
	}
	return c
}

// terminationPolicy of every injected container: the termination message is only what the
// process writes to /dev/termination-log, never its log (FallbackToLogsOnError). Kratos logs
// errors that quote its config, e.g. a DSN its driver cannot parse, password included, and a
// pod's status is readable by anyone who may get pods, unlike the Secret the value came from.
const terminationPolicy = corev1.TerminationMessageReadFile

// kubeletLiteral escapes s for a container's command or args, where the kubelet expands
// $(VAR) references (to the container's env and the service links) and reads $$ as $: the
// process then receives s itself, whatever '$' the annotations put into it. Run by hand, an arg
// copied from the pod spec needs the same $$ -> $.
func kubeletLiteral(s string) string { return strings.ReplaceAll(s, "$", "$$") }

// kratosMounts are the mounts of both Kratos containers: the rendered config read-only, /tmp
// (the root filesystem is read-only) and, for SQLite, the database directory.
func kratosMounts(s *config.Spec) []corev1.VolumeMount {
	m := []corev1.VolumeMount{
		{Name: VolumeConfig, MountPath: config.DefaultConfigDir, ReadOnly: true},
		{Name: VolumeTmp, MountPath: tmpDir},
	}
	if s.Database == config.DatabaseSQLite {
		m = append(m, corev1.VolumeMount{Name: VolumeData, MountPath: config.DefaultDataDir})
	}
	return m
}

func kratosResources(s *config.Spec) corev1.ResourceRequirements {
	cpu, memReq, memLim := s.CPU, s.Memory, s.Memory
	if cpu == "" {
		cpu = DefaultCPURequest
	}
	if memReq == "" {
		memReq, memLim = DefaultMemoryRequest, DefaultMemoryLimit
	}
	// ParseAnnotations validated the quantities; defaults are constants.
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memReq)},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memLim)},
	}
}

// preStopSeconds is how long Kratos keeps serving once its pod is being deleted. The API server
// refuses a sleep longer than the pod's terminationGracePeriodSeconds (30 by default), of which
// it is a part: a shorter grace period gets a shorter sleep, and none when it is 0.
const preStopSeconds = 5

// preStopSleep is the sleep for a pod's grace period (nil: the default).
func preStopSleep(grace *int64) int64 {
	g := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if grace != nil {
		g = *grace
	}
	return max(0, min(preStopSeconds, g))
}

// sqaOptOut keeps Kratos from sending telemetry (the flag covers serve, the env var migrate).
func sqaOptOut() []corev1.EnvVar { return []corev1.EnvVar{{Name: "SQA_OPT_OUT", Value: "true"}} }

func migrateContainer(s *config.Spec) corev1.Container {
	c := corev1.Container{
		Name:                     ContainerMigrate,
		Image:                    s.Image,
		Command:                  []string{"kratos"},
		Args:                     config.MigrateArgs(ConfigPath),
		Env:                      sqaOptOut(),
		Resources:                kratosResources(s),
		VolumeMounts:             kratosMounts(s),
		TerminationMessagePolicy: terminationPolicy,
		SecurityContext:          securityContext(),
	}
	if s.Database == config.DatabasePostgres {
		// Replicas share the database: the gate runs one pod's migration at a time (the
		// database's migration lock), so that none fails on tables another is creating.
		c.Command = []string{GatePath}
		c.Args = append([]string{"exclusive", "--config", ConfigPath, "--", "kratos"}, c.Args...)
		c.Env = append(c.Env, podNameEnv())
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: VolumeBin, MountPath: binDir, ReadOnly: true})
	}
	return c
}

// podNameEnv names the pod in the gate's database session (pg_stat_activity).
func podNameEnv() corev1.EnvVar {
	return corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}}
}

func httpGet(p string) corev1.ProbeHandler {
	// The public port: on the admin port Kratos answers /health/ready with a redirect.
	return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: p, Port: intstr.FromInt32(config.PublicPort)}}
}

// kratosContainer is the Kratos server. Kratos v1.3 has no `serve all`: `serve` runs public and
// admin APIs together.
func kratosContainer(s *config.Spec, preStop int64) corev1.Container {
	args := []string{"serve", "-c", ConfigPath, "--sqa-opt-out"}
	if s.Courier == config.CourierWatch && !gatedCourier(s) {
		// SQLite: one pod per database file, so the in-process courier is the only one.
		args = append(args, "--watch-courier")
	}
	// Startup gates the app (a native sidecar must be started before the app's containers run).
	// With manual migrations Kratos does not listen until an operator migrates, so the window is
	// an hour instead of five minutes before the kubelet restarts it.
	startup := &corev1.Probe{ProbeHandler: httpGet("/health/ready"), PeriodSeconds: 1, TimeoutSeconds: 1, FailureThreshold: 300}
	if s.Migrate == config.MigrateManual {
		startup.PeriodSeconds, startup.FailureThreshold = 2, 1800
	}
	c := corev1.Container{
		Name:    ContainerKratos,
		Image:   s.Image,
		Command: []string{"kratos"},
		Args:    args,
		Ports: []corev1.ContainerPort{
			{Name: PortNamePublic, ContainerPort: config.PublicPort, Protocol: corev1.ProtocolTCP},
			// Declared even when Kratos binds it to 127.0.0.1: port-forward and readers of the
			// pod spec find it by name.
			{Name: PortNameAdmin, ContainerPort: config.AdminPort, Protocol: corev1.ProtocolTCP},
		},
		Env:            sqaOptOut(),
		Resources:      kratosResources(s),
		VolumeMounts:   kratosMounts(s),
		StartupProbe:   startup,
		ReadinessProbe: &corev1.Probe{ProbeHandler: httpGet("/health/ready"), PeriodSeconds: 5, TimeoutSeconds: 2, FailureThreshold: 3},
		LivenessProbe:  &corev1.Probe{ProbeHandler: httpGet("/health/alive"), PeriodSeconds: 10, TimeoutSeconds: 2, FailureThreshold: 3},
		// Kratos stops listening as soon as it gets SIGTERM, while Services and ingresses may
		// still send it requests until they see the pod terminating: keep serving a few
		// seconds first, so a rolling restart loses no request (the kubelet's own sleep action:
		// the Kratos image needs no shell).

		// Not its log: Kratos's errors may quote secrets (see terminationPolicy).
		TerminationMessagePolicy: terminationPolicy,
		SecurityContext:          securityContext(),
	}
	if preStop > 0 {
		c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: preStop}}}
	}
	if s.Sidecar == config.SidecarNative {
		c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	}
	return c
}

// gatedCourier says whether the courier runs in kratos-courier behind the gate: with Postgres,
// where replicas share the database and Kratos's courier would send a mail once per replica
// that picks it up (it takes queued mails without a row lock).
func gatedCourier(s *config.Spec) bool {
	return s.Courier == config.CourierWatch && s.Database == config.DatabasePostgres
}

// needsGate says whether the pod gets the gate binary (the kratos-bin volume): for the courier,
// or for migrations that replicas must not run at the same time.
func needsGate(s *config.Spec) bool {
	return gatedCourier(s) || s.Database == config.DatabasePostgres && s.Migrate == config.MigrateAuto
}

// Resources of kratos-courier: a Kratos process that mostly waits (its memory limit is
// Kratos's, as it loads the same program).
var (
	courierCPURequest    = resource.MustParse("10m")
	courierMemoryRequest = resource.MustParse("64Mi")
)

// courierContainer is kratos-courier: the gate, which runs `kratos courier watch` while this
// pod holds the database's courier lock.
func courierContainer(s *config.Spec) corev1.Container {
	res := kratosResources(s)
	res.Requests = corev1.ResourceList{corev1.ResourceCPU: courierCPURequest.DeepCopy(), corev1.ResourceMemory: courierMemoryRequest.DeepCopy()}
	c := corev1.Container{
		Name:                     ContainerCourier,
		Image:                    s.Image,
		Command:                  []string{GatePath},
		Args:                     []string{"run", "--config", ConfigPath, "--", "kratos", "courier", "watch", "-c", ConfigPath},
		Env:                      append(sqaOptOut(), podNameEnv()),
		Resources:                res,
		VolumeMounts:             append(kratosMounts(s), corev1.VolumeMount{Name: VolumeBin, MountPath: binDir, ReadOnly: true}),
		TerminationMessagePolicy: terminationPolicy,
		SecurityContext:          securityContext(),
	}
	if s.Sidecar == config.SidecarNative {
		c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	}
	return c
}

// MetricsProxyCommand is the kratos-metrics container's command: the injector image carries
// metrics-proxy (cmd/metrics-proxy) on its PATH, beside webhook.
var MetricsProxyCommand = []string{"metrics-proxy"}

// Resources of kratos-metrics: a small proxy that answers a scrape now and then.
var (
	metricsCPURequest    = resource.MustParse("5m")
	metricsMemoryRequest = resource.MustParse("16Mi")
	metricsMemoryLimit   = resource.MustParse("64Mi")
)

// metricsContainer is kratos-metrics: Kratos serves its metrics only on the admin API, which
// listens on the pod's loopback; this proxy serves that one path on the pod's IP, so
// Prometheus can scrape it while the admin API stays unreachable from the network.
func metricsContainer(s *config.Spec, injectorImage string) corev1.Container {
	c := corev1.Container{
		Name:    ContainerMetrics,
		Image:   injectorImage,
		Command: slices.Clone(MetricsProxyCommand),
		Args: []string{
			"--listen=:" + strconv.Itoa(config.MetricsPort),
			"--upstream=" + config.MetricsUpstream,
		},
		Ports: []corev1.ContainerPort{{Name: PortNameMetrics, ContainerPort: config.MetricsPort, Protocol: corev1.ProtocolTCP}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: metricsCPURequest.DeepCopy(), corev1.ResourceMemory: metricsMemoryRequest.DeepCopy()},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: metricsMemoryLimit.DeepCopy()},
		},
		TerminationMessagePolicy: terminationPolicy,
		SecurityContext:          securityContext(),
	}
	if s.Sidecar == config.SidecarNative {
		c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	}
	return c
}

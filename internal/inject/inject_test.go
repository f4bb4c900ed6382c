package inject

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kratos-injector/kratos-injector/internal/config"
	"github.com/kratos-injector/kratos-injector/internal/golden"
)

// testOptions are fixed so the golden files do not depend on the build's version.
var testOptions = Options{
	InjectorImage: "ghcr.io/kratos-injector/kratos-injector:test",
	KratosImage:   DefaultKratosImage,
	Version:       "test",
}

func readPod(t testing.TB, file string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	if err := yaml.UnmarshalStrict(b, pod); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return pod
}

// TestGolden injects every testdata/*.in.yaml and compares with its .golden.yaml.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			pod := readPod(t, in)
			before := pod.DeepCopy()
			res, err := Inject(pod, testOptions)
			if err != nil {
				t.Fatal(err)
			}
			out := res.Pod
			if d := cmp.Diff(before, pod); d != "" {
				t.Fatalf("Inject modified its input (-before +after):\n%s", d)
			}
			got, err := yaml.Marshal(out)
			if err != nil {
				t.Fatal(err)
			}
			golden.Compare(t, strings.TrimSuffix(in, ".in.yaml")+".golden.yaml", "injected pod", got)
			checkInvariants(t, pod, out)

			t.Run("idempotent", func(t *testing.T) {
				again, err := Inject(out, testOptions)
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(out, again.Pod); d != "" {
					t.Errorf("second injection changed the pod (-once +twice):\n%s", d)
				}
			})
		})
	}
}

// checkInvariants holds for every injected pod, whatever the settings.
func checkInvariants(t *testing.T, in, out *corev1.Pod) {
	t.Helper()
	spec, err := ParseAnnotations(in.Annotations, testOptions.KratosImage)
	if err != nil {
		t.Fatal(err)
	}
	checkRenderable(t, spec, t.TempDir())
	// The app's containers keep their order, after ours.
	names := func(cs []corev1.Container) []string {
		var n []string
		for _, c := range cs {
			n = append(n, c.Name)
		}
		return n
	}
	gotInit, gotMain := names(out.Spec.InitContainers), names(out.Spec.Containers)
	ours := []string{ContainerConfig}
	if spec.Migrate == config.MigrateAuto {
		ours = append(ours, ContainerMigrate)
	}
	wantMain := names(in.Spec.Containers)
	kratos := []string{ContainerKratos}
	if spec.Database == config.DatabasePostgres && spec.Courier == config.CourierWatch {
		kratos = append(kratos, ContainerCourier)
	}
	if spec.Metrics == config.MetricsOn {
		kratos = append(kratos, ContainerMetrics)
	}
	if spec.Sidecar == config.SidecarNative {
		ours = append(ours, kratos...)
	} else {
		wantMain = append(kratos, wantMain...)
	}
	if d := cmp.Diff(append(ours, names(in.Spec.InitContainers)...), gotInit); d != "" {
		t.Errorf("init containers (-want +got):\n%s", d)
	}
	if d := cmp.Diff(wantMain, gotMain); d != "" {
		t.Errorf("containers (-want +got):\n%s", d)
	}
	// Every injected container is locked down and mounts nothing the pod lacks.
	vols := map[string]bool{}
	for _, v := range out.Spec.Volumes {
		if vols[v.Name] {
			t.Errorf("volume %s twice", v.Name)
		}
		vols[v.Name] = true
		if len(v.Name) > 63 {
			t.Errorf("volume name %s longer than 63", v.Name)
		}
	}
	for _, c := range append(append([]corev1.Container{}, out.Spec.InitContainers...), out.Spec.Containers...) {
		if !strings.HasPrefix(c.Name, "kratos") {
			continue
		}
		sc := c.SecurityContext
		if sc == nil || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem || sc.RunAsUser == nil ||
			len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %s: securityContext is not restricted: %+v", c.Name, sc)
		}
		for _, m := range c.VolumeMounts {
			if !vols[m.Name] {
				t.Errorf("container %s mounts missing volume %s", c.Name, m.Name)
			}
		}
	}
	st, err := ParseStatus(out.Annotations[AnnotationStatus])
	if err != nil || st.Version != "test" || len(st.SpecHash) != 16 {
		t.Errorf("status %q: %+v %v", out.Annotations[AnnotationStatus], st, err)
	}
	if out.Labels[LabelInstance] == "" {
		t.Error("no instance label")
	}
}

func TestRenderArgsCarrySpec(t *testing.T) {
	pod := readPod(t, "testdata/all-annotations.in.yaml")
	res, err := Inject(pod, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Pod.Spec.InitContainers[0]
	// As the kubelet passes it (see TestArgsSurviveKubeletExpansion).
	spec, err := config.UnmarshalSpec(strings.TrimPrefix(kubeletExpand(c.Args[0], nil), "--spec="))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ParseAnnotations(pod.Annotations, testOptions.KratosImage)
	if d := cmp.Diff(want, spec); d != "" {
		t.Errorf("spec in args differs from the parsed one:\n%s", d)
	}
	// Every Secret and ConfigMap the spec names is mounted where rendering looks for it.
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.ReadOnly
	}
	secrets, cms := spec.Inputs()
	for _, s := range secrets {
		if ro, ok := mounts[config.SecretDir(config.DefaultInputDir, s)]; !ok || !ro {
			t.Errorf("Secret %s not mounted read-only", s)
		}
	}
	for _, s := range cms {
		if ro, ok := mounts[config.ConfigMapDir(config.DefaultInputDir, s)]; !ok || !ro {
			t.Errorf("ConfigMap %s not mounted read-only", s)
		}
	}
}

func TestInstanceName(t *testing.T) {
	owner := func(kind, name string) []metav1OwnerRef { return []metav1OwnerRef{{kind, name}} }
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod
		want   string
		errSub string
	}{
		{"deployment", podWith("", "web-5d8f-", map[string]string{"pod-template-hash": "5d8f"}, owner("ReplicaSet", "web-5d8f")), "web", ""},
		{"replicaset without hash label", podWith("", "rs-", nil, owner("ReplicaSet", "rs-abc")), "rs-abc", ""},
		{"argo rollout", podWith("", "", map[string]string{"rollouts-pod-template-hash": "77f"}, owner("ReplicaSet", "shop-77f")), "shop", ""},
		{"statefulset", podWith("db-0", "db-", nil, owner("StatefulSet", "db")), "db", ""},
		{"job", podWith("", "nightly-28374658-", nil, owner("Job", "nightly-28374658")), "nightly-28374658", ""},
		{"bare pod", podWith("solo", "", nil, nil), "solo", ""},
		{"generateName only", podWith("", "solo-", nil, nil), "solo", ""},
		{"pinned label", podWith("x", "", map[string]string{LabelInstance: "pinned"}, owner("StatefulSet", "db")), "pinned", ""},
		{"bad pinned label", podWith("x", "", map[string]string{LabelInstance: "-bad-"}, nil), "", "not a valid label value"},
		{"nothing", podWith("", "", nil, nil), "", "set label"},
		{"long name", podWith(strings.Repeat("a", 70), "", nil, nil), strings.Repeat("a", 54) + "-", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := InstanceName(tc.pod)
			if tc.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSub) {
					t.Fatalf("err %v, want %q", err, tc.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, tc.want) || len(got) > 63 {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestVolumeNames(t *testing.T) {
	seen := map[string]string{}
	for _, n := range []string{"db", "a.b", "a-b", strings.Repeat("x", 49), strings.Repeat("x", 50), strings.Repeat("x", 253), strings.Repeat("x", 252) + "y", "x." + strings.Repeat("y", 60)} {
		v := SecretVolumeName(n)
		if len(v) > 63 || !strings.HasPrefix(v, "kratos-secret-") || strings.Contains(v, ".") || strings.HasSuffix(v, "-") {
			t.Errorf("%q -> %q: not a good DNS label", n, v)
		}
		if prev, dup := seen[v]; dup {
			t.Errorf("%q and %q share volume %q", prev, n, v)
		}
		seen[v] = n
	}
	if got := SecretVolumeName("db"); got != "kratos-secret-db" {
		t.Errorf("simple name hashed: %s", got)
	}
}

func TestStatusRoundTrip(t *testing.T) {
	s := Status{Version: "v1.2.3", SpecHash: "0123456789abcdef"}
	got, err := ParseStatus(s.String())
	if err != nil || got != s {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := ParseStatus("nope"); err == nil {
		t.Fatal("want error")
	}
}

func TestSkipReason(t *testing.T) {
	p := &corev1.Pod{}
	if SkipReason(p) != ReasonNotLabelled {
		t.Error("unlabelled pod not skipped")
	}
	p.Labels = map[string]string{LabelInject: "false"}
	if SkipReason(p) != ReasonNotLabelled {
		t.Error("label false not skipped")
	}
	p.Labels[LabelInject] = "true"
	if SkipReason(p) != "" {
		t.Error("labelled pod skipped")
	}
	p.Annotations = map[string]string{AnnotationStatus: "injected"}
	if SkipReason(p) != ReasonAlreadyInjected {
		t.Error("injected pod not skipped")
	}
}

package inject

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/kratos-injector/kratos-injector/internal/config"
)

// Names of the volumes the injector always owns.
const (
	VolumeConfig = "kratos-config"
	VolumeData   = "kratos-data"
	VolumeTmp    = "kratos-tmp"
	// VolumeBin carries the courier gate from the injector image to the Kratos image.
	VolumeBin = "kratos-bin"

	secretVolumePrefix    = "kratos-secret-"
	configMapVolumePrefix = "kratos-cm-"

	tmpDir = "/tmp"
	binDir = "/kratos-injector/bin"
)

// Size limits, copied into each pod: a Quantity caches its string form, so sharing one
// between pods would be a data race.
var (
	configSizeLimit = resource.MustParse("16Mi")
	tmpSizeLimit    = resource.MustParse("64Mi")
	binSizeLimit    = resource.MustParse("32Mi")
)

// SecretVolumeName is the volume of Secret name: a DNS label of at most 63 characters, equal
// to the prefixed name when that is already one, else cut with a hash suffix so two Secrets
// never share a volume (a.b and a-b differ by hash).
func SecretVolumeName(name string) string { return volumeName(secretVolumePrefix, name) }

// ConfigMapVolumeName is SecretVolumeName for ConfigMaps.
func ConfigMapVolumeName(name string) string { return volumeName(configMapVolumePrefix, name) }

func volumeName(prefix, name string) string {
	v := prefix + name
	if len(v) <= 63 && !strings.Contains(name, ".") {
		return v
	}
	return truncateWithHash(prefix+strings.ReplaceAll(name, ".", "-"), min(63, len(v)+9))
}

// volumes returns the pod volumes of a spec and the render container's input mounts.
func volumes(s *config.Spec) ([]corev1.Volume, []corev1.VolumeMount) {
	// Exactly what Render may read: it refuses any Secret or ConfigMap Inputs does not list.
	secrets, configMaps := s.Inputs()
	configSize, tmpSize := configSizeLimit.DeepCopy(), tmpSizeLimit.DeepCopy()
	vols := make([]corev1.Volume, 0, 4+len(secrets)+len(configMaps))
	vols = append(vols,
		corev1.Volume{Name: VolumeConfig, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			// In memory: the rendered config holds the secrets and must never touch a disk.
			Medium: corev1.StorageMediumMemory, SizeLimit: &configSize}}},
		corev1.Volume{Name: VolumeTmp, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &tmpSize}}},
	)
	if needsGate(s) {
		binSize := binSizeLimit.DeepCopy()
		vols = append(vols, corev1.Volume{Name: VolumeBin, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &binSize}}})
	}
	if s.Database == config.DatabaseSQLite {
		vols = append(vols, corev1.Volume{Name: VolumeData, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	vols = append(vols, noTokenVolume())
	// Optional: a missing Secret or key must fail the render init container with a message
	// naming it, not leave the pod stuck in ContainerCreating on a mount error.
	optional := true
	mounts := make([]corev1.VolumeMount, 0, len(secrets)+len(configMaps))
	for _, n := range secrets {
		v := SecretVolumeName(n)
		vols = append(vols, corev1.Volume{Name: v, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: n, Optional: &optional}}})
		mounts = append(mounts, corev1.VolumeMount{Name: v, MountPath: config.SecretDir(config.DefaultInputDir, n), ReadOnly: true})
	}
	for _, n := range configMaps {
		v := ConfigMapVolumeName(n)
		vols = append(vols, corev1.Volume{Name: v, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: n}, Optional: &optional}}})
		mounts = append(mounts, corev1.VolumeMount{Name: v, MountPath: config.ConfigMapDir(config.DefaultInputDir, n), ReadOnly: true})
	}
	return vols, mounts
}

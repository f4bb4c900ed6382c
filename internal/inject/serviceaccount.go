package inject

import corev1 "k8s.io/api/core/v1"

// VolumeNoToken is an empty volume mounted read-only over the service-account token's path in
// every injected container, so that none of them holds the pod's Kubernetes credentials.
//
// Why: none of them calls the Kubernetes API (render reads mounted inputs, the courier gate
// locks in Postgres, the metrics proxy reads Kratos's loopback), and Kratos serves the
// internet: a flaw in it must not hand out the app's service account, whatever RBAC that has.
// Kubernetes has no per-container opt-out; its ServiceAccount admission plugin mounts the token
// in every container that has nothing mounted at that path.
//
// It also makes admission single: the plugin runs again after a webhook changed the pod, and
// used to add the token to the injected containers then, a change for which the API server
// called the webhook a second time (reinvocationPolicy IfNeeded). Now it finds nothing to add.
const VolumeNoToken = "kratos-no-token"

// serviceAccountTokenPath is where the ServiceAccount admission plugin mounts the token.
const serviceAccountTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// noTokenVolume is VolumeNoToken's volume: empty, and mounted read-only, so it stays empty.
func noTokenVolume() corev1.Volume {
	return corev1.Volume{Name: VolumeNoToken, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

// withoutToken mounts VolumeNoToken over the token's path in each container.
func withoutToken(cs []corev1.Container) {
	for i := range cs {
		cs[i].VolumeMounts = append(cs[i].VolumeMounts, corev1.VolumeMount{Name: VolumeNoToken, ReadOnly: true, MountPath: serviceAccountTokenPath})
	}
}

package inject

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// admittedPod is the part of a pod that the injection reads (Inject, InstanceName, conflicts,
// Warnings, Patch), with the JSON names and types of corev1.Pod (TestAdmittedPodMirrorsPod).
// The handler decodes the request's pod into it rather than into a whole corev1.Pod:
// decoding every field (environment, probes, resource quantities) was more than half of a
// review's CPU, for values the patch never touches since it only adds.
// TestAdmittedPodInjectsAsPod holds it to what it must be: the handler answers for the
// projected pod what Inject and Patch make of the whole one.
type admittedPod struct {
	APIVersion string       `json:"apiVersion,omitempty"`
	Kind       string       `json:"kind,omitempty"`
	Metadata   admittedMeta `json:"metadata,omitempty"`
	Spec       admittedSpec `json:"spec,omitempty"`
}

type admittedMeta struct {
	Name            string                  `json:"name,omitempty"`
	GenerateName    string                  `json:"generateName,omitempty"`
	Labels          map[string]string       `json:"labels,omitempty"`
	Annotations     map[string]string       `json:"annotations,omitempty"`
	OwnerReferences []metav1.OwnerReference `json:"ownerReferences,omitempty"`
}

type admittedSpec struct {
	Volumes                       []admittedVolume     `json:"volumes,omitempty"`
	InitContainers                []admittedContainer  `json:"initContainers,omitempty"`
	Containers                    []admittedContainer  `json:"containers"`
	RestartPolicy                 corev1.RestartPolicy `json:"restartPolicy,omitempty"`
	TerminationGracePeriodSeconds *int64               `json:"terminationGracePeriodSeconds,omitempty"`
	HostNetwork                   bool                 `json:"hostNetwork,omitempty"`
}

type admittedContainer struct {
	Name  string                 `json:"name"`
	Ports []corev1.ContainerPort `json:"ports,omitempty"`
}

type admittedVolume struct {
	Name string `json:"name"`
}

// pod is the corev1.Pod holding these fields, and no other.
func (a *admittedPod) pod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: a.APIVersion, Kind: a.Kind},
		ObjectMeta: metav1.ObjectMeta{
			Name: a.Metadata.Name, GenerateName: a.Metadata.GenerateName,
			Labels: a.Metadata.Labels, Annotations: a.Metadata.Annotations, OwnerReferences: a.Metadata.OwnerReferences,
		},
		Spec: corev1.PodSpec{
			Volumes:        admittedVolumes(a.Spec.Volumes),
			InitContainers: admittedContainers(a.Spec.InitContainers),
			Containers:     admittedContainers(a.Spec.Containers),
			RestartPolicy:  a.Spec.RestartPolicy, TerminationGracePeriodSeconds: a.Spec.TerminationGracePeriodSeconds,
			HostNetwork: a.Spec.HostNetwork,
		},
	}
}

func admittedContainers(in []admittedContainer) []corev1.Container {
	if in == nil {
		return nil
	}
	out := make([]corev1.Container, len(in))
	for i := range in {
		out[i].Name, out[i].Ports = in[i].Name, in[i].Ports
	}
	return out
}

func admittedVolumes(in []admittedVolume) []corev1.Volume {
	if in == nil {
		return nil
	}
	out := make([]corev1.Volume, len(in))
	for i := range in {
		out[i].Name = in[i].Name
	}
	return out
}

package inject

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// templateHashLabels are the labels by which ReplicaSet-like controllers suffix their
// ReplicaSet names: Deployments and Argo Rollouts.
var templateHashLabels = []string{"pod-template-hash", "rollouts-pod-template-hash"}

// InstanceName derives the Kratos instance name (the value of LabelInstance) from the pod,
// without an API call: an existing label wins (users pin names that way), then the controller
// owner (a ReplicaSet named <deployment>-<pod-template-hash> gives the Deployment), then the
// pod's name or generateName.
func InstanceName(pod *corev1.Pod) (string, error) {
	if v, ok := pod.Labels[LabelInstance]; ok {
		if errs := content.IsLabelValue(v); len(errs) > 0 || v == "" {
			return "", fmt.Errorf("%s is not a valid label value", quote(v))
		}
		return v, nil
	}
	var name string
	if owner := metav1.GetControllerOfNoCopy(pod); owner != nil {
		name = owner.Name
		if owner.Kind == "ReplicaSet" {
			for _, l := range templateHashLabels {
				if h := pod.Labels[l]; h != "" && strings.HasSuffix(name, "-"+h) && len(name) > len(h)+1 {
					name = strings.TrimSuffix(name, "-"+h)
					break
				}
			}
		}
	}
	if name == "" {
		name = pod.Name
	}
	if name == "" {
		name = strings.TrimRight(pod.GenerateName, "-.")
	}
	if name == "" {
		return "", fmt.Errorf("the pod has no owner, name or generateName to name the instance: set label %s", LabelInstance)
	}
	return labelValue(name), nil
}

// labelValue fits an object name (a DNS subdomain, up to 253 characters) into a label value
// (63), keeping it unique with a hash suffix when it must be cut.
func labelValue(name string) string {
	if len(name) <= 63 {
		return name
	}
	return truncateWithHash(name, 63)
}

// truncateWithHash cuts s to max characters, the last nine being "-" and a hash of the whole s,
// and never ends the kept prefix on a character a DNS label cannot end with.
func truncateWithHash(s string, max int) string {
	sum := sha256.Sum256([]byte(s))
	h := hex.EncodeToString(sum[:4])
	keep := strings.TrimRight(s[:max-len(h)-1], "-._")
	return keep + "-" + h
}

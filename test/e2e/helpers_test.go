package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

var createOpts = metav1.CreateOptions{}

func nsObj(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// waitPods polls until the pods matching selector in ns satisfy ok, and reports what it saw last.
func waitPods(t testing.TB, c kubernetes.Interface, ns, selector string, timeout time.Duration, ok func([]corev1.Pod) error) []corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			if last = ok(list.Items); last == nil {
				return list.Items
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pods %q in %s: %v (after %s)", selector, ns, last, timeout)
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func podsRunning(n int) func([]corev1.Pod) error {
	return func(pods []corev1.Pod) error {
		running := 0
		var states []string
		for _, p := range pods {
			states = append(states, fmt.Sprintf("%s=%s", p.Name, p.Status.Phase))
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if running < n {
			return fmt.Errorf("%d/%d Running [%s]", running, n, strings.Join(states, " "))
		}
		return nil
	}
}

func selector(m map[string]string) string { return labels.SelectorFromSet(m).String() }

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

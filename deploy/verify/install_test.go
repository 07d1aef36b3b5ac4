package verify_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sandbox-guard/sandbox-guard/deploy/verify"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

// helm install and helm uninstall on a real API server, in both modes: the API server validates
// and stores every object the chart renders (schemas included: Helm builds them against the
// server's OpenAPI), the release is recorded, and uninstall removes every object again.
func TestHelmInstallAndUninstallOnAPIServer(t *testing.T) {
	kubeconfig := apiServer(t)
	for _, mode := range []string{"installer", "external"} {
		t.Run(mode, func(t *testing.T) {
			installAndUninstall(t, kubeconfig, "sg-helm-"+mode, map[string]any{"mode": mode})
		})
	}
}

// installAndUninstall installs the chart as release sandbox-guard into namespace on the API server
// kubeconfig names, checks what the API server holds, uninstalls it and checks it is all gone.
func installAndUninstall(t *testing.T, kubeconfig, namespace string, values map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster, err := verify.Connect(kubeconfig, namespace)
	must(t, err)
	cs, err := cluster.Clientset()
	must(t, err)
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), namespace, metav1.DeleteOptions{}) })

	rel, err := cluster.Install(ctx, chartDir, release, values, false, time.Minute)
	must(t, err)
	if rel.Info == nil || rel.Info.Status != "deployed" {
		t.Fatalf("release %+v", rel.Info)
	}
	rendered, err := verify.DecodeAll(rel.Manifest)
	must(t, err)
	objs := byKey(t, "release", namespace, rendered)
	ds, err := cs.AppsV1().DaemonSets(namespace).Get(ctx, "sandbox-guard", metav1.GetOptions{})
	must(t, err)
	if ds.Annotations["meta.helm.sh/release-name"] != release || ds.Labels["app.kubernetes.io/managed-by"] != "Helm" {
		t.Errorf("DaemonSet labels %v annotations %v: not Helm's", ds.Labels, ds.Annotations)
	}
	// What the API server stored is what was rendered (it adds defaults, which these lack).
	want := objs["DaemonSet/sandbox-guard"].(*appsv1.DaemonSet).Spec.Template.Spec
	got := ds.Spec.Template.Spec
	if !cmp.Equal(got.Containers[0].Args, want.Containers[0].Args) || !cmp.Equal(got.Containers[0].VolumeMounts, want.Containers[0].VolumeMounts) ||
		!cmp.Equal(got.Containers[0].SecurityContext, want.Containers[0].SecurityContext) || len(got.Volumes) != len(want.Volumes) {
		t.Errorf("the API server holds another pod spec than the one rendered:\n%s", cmp.Diff(want, got))
	}
	cm, err := cs.CoreV1().ConfigMaps(namespace).Get(ctx, "sandbox-guard-config", metav1.GetOptions{})
	must(t, err)
	if !strings.Contains(cm.Data["config.yaml"], "mode: warn") {
		t.Errorf("ConfigMap config.yaml:\n%s", cm.Data["config.yaml"])
	}
	_, err = cs.CoreV1().ServiceAccounts(namespace).Get(ctx, "sandbox-guard", metav1.GetOptions{})
	must(t, err)
	secrets, err := cs.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=" + release})
	must(t, err)
	if len(secrets.Items) != 1 {
		t.Errorf("%d release records", len(secrets.Items))
	}

	must(t, cluster.Uninstall(release, time.Minute))
	testutil.WaitFor(t, "the release's objects to be deleted", func() bool {
		for _, get := range []func() error{
			func() error {
				_, err := cs.AppsV1().DaemonSets(namespace).Get(ctx, "sandbox-guard", metav1.GetOptions{})
				return err
			},
			func() error {
				_, err := cs.CoreV1().ConfigMaps(namespace).Get(ctx, "sandbox-guard-config", metav1.GetOptions{})
				return err
			},
			func() error {
				_, err := cs.CoreV1().ServiceAccounts(namespace).Get(ctx, "sandbox-guard", metav1.GetOptions{})
				return err
			},
			func() error {
				l, err := cs.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=" + release})
				if err == nil && len(l.Items) > 0 {
					return fmt.Errorf("%d release records", len(l.Items))
				}
				return apierrors.NewNotFound(corev1.Resource("secrets"), release)
			},
		} {
			if err := get(); !apierrors.IsNotFound(err) {
				return false
			}
		}
		return true
	})
}

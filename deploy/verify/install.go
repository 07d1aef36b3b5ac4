package verify

import (
	"context"
	"fmt"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	release "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
)

// Cluster is Helm's view of the API server a kubeconfig names, for one namespace.
type Cluster struct {
	cfg       *action.Configuration
	namespace string
}

// Connect returns Helm's configuration for the API server kubeconfig names (its current
// context), storing releases in namespace as Secrets, as the helm command does.
func Connect(kubeconfig, namespace string) (*Cluster, error) {
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &kubeconfig, &namespace
	cfg := action.NewConfiguration()
	if err := cfg.Init(flags, namespace, "secret"); err != nil {
		return nil, fmt.Errorf("helm configuration for %s: %w", kubeconfig, err)
	}
	return &Cluster{cfg: cfg, namespace: namespace}, nil
}

// Clientset is a Kubernetes client for the same API server.
func (c *Cluster) Clientset() (kubernetes.Interface, error) { return c.cfg.KubernetesClientSet() }

// Install runs `helm install name dir --namespace <namespace> --create-namespace` with values.
// With wait it waits, up to timeout, until every object is ready (Helm's status watcher: the
// DaemonSet's pods running on every node); without, it returns once the API server has them.
func (c *Cluster) Install(ctx context.Context, dir, name string, values map[string]any, wait bool, timeout time.Duration) (*release.Release, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("loading the chart %s: %w", dir, err)
	}
	install := action.NewInstall(c.cfg)
	install.ReleaseName, install.Namespace, install.CreateNamespace = name, c.namespace, true
	install.Timeout = timeout
	install.WaitStrategy = kube.HookOnlyStrategy
	if wait {
		install.WaitStrategy = kube.StatusWatcherStrategy
	}
	rel, err := install.RunWithContext(ctx, ch, values)
	if err != nil {
		return nil, fmt.Errorf("helm install %s %s: %w", name, dir, err)
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("helm install %s: a release of type %T", name, rel)
	}
	return r, nil
}

// Uninstall runs `helm uninstall name`, waiting up to timeout for the objects to be deleted.
func (c *Cluster) Uninstall(name string, timeout time.Duration) error {
	u := action.NewUninstall(c.cfg)
	u.Timeout = timeout
	u.WaitStrategy = kube.StatusWatcherStrategy
	if _, err := u.Run(name); err != nil {
		return fmt.Errorf("helm uninstall %s: %w", name, err)
	}
	return nil
}

// Package deploy holds sandbox-guard's Kubernetes manifests (a kustomize base, two overlays and
// components, a Helm chart; see README.md) and builds the kustomizations the way `kubectl apply -k`
// does, decoding every resource strictly into its Kubernetes API type. Tests use it: deploy_test.go
// checks the manifests, deploy/verify compares them with the chart, and the end-to-end tests run
// the DaemonSet's container spec through CRI.
package deploy

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Objects is what a kustomization builds.
type Objects struct {
	DaemonSet *appsv1.DaemonSet
	ConfigMap *corev1.ConfigMap
	All       []any // every resource, decoded, in kustomize's order
}

// MonitoringAPIVersion is the Prometheus operator's API, which components/monitoring uses. Its
// kinds are decoded strictly by deploy/verify, a module of its own with the operator's Go types
// (and Helm's), so that neither becomes a dependency of the plugin's module.
const MonitoringAPIVersion = "monitoring.coreos.com/v1"

// New returns an empty object of a kind the manifests use, or nil for any other kind.
func New(kind string) any {
	switch kind {
	case "Kustomization", "Component":
		return &types.Kustomization{}
	case "Namespace":
		return &corev1.Namespace{}
	case "ServiceAccount":
		return &corev1.ServiceAccount{}
	case "ConfigMap":
		return &corev1.ConfigMap{}
	case "DaemonSet":
		return &appsv1.DaemonSet{}
	}
	return nil
}

// DecodeStrict decodes one YAML document into the type its kind names; a field unknown to that
// type is an error.
func DecodeStrict(data []byte) (any, error) {
	var meta struct {
		Kind string `json:"kind"`
	}
	if err := yaml.Unmarshal(data, &meta); err != nil {
		return nil, err
	}
	obj := New(meta.Kind)
	if obj == nil {
		return nil, fmt.Errorf("kind %q is not one the manifests use", meta.Kind)
	}
	if err := yaml.UnmarshalStrict(data, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", meta.Kind, err)
	}
	return obj, nil
}

// Decoder decodes one YAML document strictly into a typed object (DecodeStrict, or one that
// knows more kinds, such as deploy/verify's for the Prometheus operator's).
type Decoder func(data []byte) (any, error)

// Build runs kustomize on dir (a kustomization directory) and decodes the result strictly.
func Build(dir string) (*Objects, error) { return BuildWith(dir, DecodeStrict) }

// BuildWith is Build with another decoder.
func BuildWith(dir string, decode Decoder) (*Objects, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out := &Objects{}
	for _, r := range res.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s %s: %w", dir, r.GetKind(), r.GetName(), err)
		}
		obj, err := decode(b)
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s: %w", dir, r.GetName(), err)
		}
		out.All = append(out.All, obj)
		switch o := obj.(type) {
		case *appsv1.DaemonSet:
			if out.DaemonSet != nil {
				return nil, fmt.Errorf("kustomize build %s: more than one DaemonSet", dir)
			}
			out.DaemonSet = o
		case *corev1.ConfigMap:
			if out.ConfigMap != nil {
				return nil, fmt.Errorf("kustomize build %s: more than one ConfigMap", dir)
			}
			out.ConfigMap = o
		}
	}
	if out.DaemonSet == nil || out.ConfigMap == nil {
		return nil, fmt.Errorf("kustomize build %s: want a DaemonSet and a ConfigMap", dir)
	}
	return out, nil
}

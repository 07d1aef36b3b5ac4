// Package verify checks sandbox-guard's packaging with the real tools: the Helm chart in
// deploy/chart with Helm's own packages (lint, template, install), the kustomize builds it must
// match, and the Prometheus operator objects of deploy/components/monitoring with the operator's
// API types, Prometheus's rule loader and the plugin's /metrics.
//
// It is a Go module of its own so that Helm, the operator's types and Prometheus (and the newer
// versions of gRPC, OpenTelemetry and others that they require) never enter the plugin's module:
// the plugin binary is built exactly as without them. `make unit` runs its tests.
package verify

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/sandbox-guard/sandbox-guard/deploy"
)

// KubeVersion is the Kubernetes the chart is rendered for: the version the end-to-end tests run
// (test/tools/install-deps.sh). Helm's default in tests would be v1.20, below the chart's
// kubeVersion.
var KubeVersion = common.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}

// Decode decodes one YAML document strictly into its API type: the kinds deploy.DecodeStrict
// knows and the Prometheus operator's PodMonitor and PrometheusRule. A field unknown to the type
// is an error.
func Decode(data []byte) (any, error) {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(data, &meta); err != nil {
		return nil, err
	}
	var obj any
	switch {
	case meta.APIVersion == deploy.MonitoringAPIVersion && meta.Kind == monitoringv1.PodMonitorsKind:
		obj = &monitoringv1.PodMonitor{}
	case meta.APIVersion == deploy.MonitoringAPIVersion && meta.Kind == monitoringv1.PrometheusRuleKind:
		obj = &monitoringv1.PrometheusRule{}
	default:
		return deploy.DecodeStrict(data)
	}
	if err := yaml.UnmarshalStrict(data, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", meta.Kind, err)
	}
	return obj, nil
}

// DecodeAll decodes every document of a YAML stream (a rendered chart) with Decode.
func DecodeAll(stream string) ([]any, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewBufferString(stream)))
	var out []any
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, err := Decode(doc)
		if err != nil {
			return nil, err
		}
		out = append(out, obj)
	}
}

// stripComments drops whole-line comments (a rendered template's "# Source:" header).
func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

// Template renders the chart in dir as `helm template` does (a client-only dry run of an
// install): the release name and namespace given, values merged over the chart's values.yaml,
// validated against its values.schema.json. It returns the manifest.
func Template(dir, name, namespace string, values map[string]any) (string, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return "", fmt.Errorf("loading the chart %s: %w", dir, err)
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.Replace = true // no release store to check the name against
	install.ReleaseName, install.Namespace = name, namespace
	kv := KubeVersion
	install.KubeVersion = &kv
	rel, err := install.Run(ch, values)
	if err != nil {
		return "", fmt.Errorf("helm template %s: %w", dir, err)
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return "", fmt.Errorf("helm template %s: a release of type %T", dir, rel)
	}
	return r.Manifest, nil
}

// Lint runs `helm lint` on the chart in dir with values; it returns every message, and an error
// for any message above INFO or a failed lint.
func Lint(dir string, values map[string]any) ([]string, error) {
	lint := action.NewLint()
	lint.Strict = true
	kv := KubeVersion
	lint.KubeVersion = &kv
	res := lint.Run([]string{dir}, values)
	var msgs []string
	for _, m := range res.Messages {
		msgs = append(msgs, m.Error())
	}
	if action.HasWarningsOrErrors(res) {
		return msgs, fmt.Errorf("helm lint %s: %v", dir, errors.Join(res.Errors...))
	}
	return msgs, nil
}

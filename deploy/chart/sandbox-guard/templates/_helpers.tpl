{{/* The objects' name: the release name if it contains sandbox-guard, else <release>-sandbox-guard. */}}
{{- define "sandbox-guard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Every object's labels: the kustomize base's two, and Helm's own. */}}
{{- define "sandbox-guard.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/part-of: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* What selects the pods (the DaemonSet's immutable selector, the PodMonitor): as in kustomize. */}}
{{- define "sandbox-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
{{- end -}}

{{/*
The port of config.metrics.address, where the plugin serves /healthz, /readyz and /metrics on the
node (the pods use the host network). Missing key: the plugin's default 127.0.0.1:9809. The probes
need the server, so "" (off) is refused.
*/}}
{{- define "sandbox-guard.metricsAddress" -}}
{{- $addr := dig "metrics" "address" "127.0.0.1:9809" .Values.config -}}
{{- if not $addr -}}
{{- fail "config.metrics.address is empty: the DaemonSet's probes ask the plugin's health server there; keep an address (default 127.0.0.1:9809)" -}}
{{- end -}}
{{- if not (regexMatch "^(.*):([0-9]+)$" $addr) -}}
{{- fail (printf "config.metrics.address %q: want host:port" $addr) -}}
{{- end -}}
{{- $addr -}}
{{- end -}}

{{- define "sandbox-guard.metricsPort" -}}
{{- include "sandbox-guard.metricsAddress" . | regexFind "[0-9]+$" -}}
{{- end -}}

{{/* Whether containerd's hosts directory is mounted writable for the credential bridge ("true" or ""). */}}
{{- define "sandbox-guard.bridgeMount" -}}
{{- $key := dig "ecr" "credentialBridge" false .Values.config -}}
{{- $mount := .Values.credentialBridge.mount -}}
{{- if eq (toString $mount) "auto" -}}
{{- if and $key (eq .Values.mode "external") -}}true{{- end -}}
{{- else if $mount -}}
{{- if ne .Values.mode "external" -}}
{{- fail "credentialBridge.mount: true applies to mode external only (in mode installer the plugin containerd runs on the host writes hosts.toml itself)" -}}
{{- end -}}
true
{{- else if and $key (eq .Values.mode "external") -}}
{{- fail "config.ecr.credentialBridge is true but credentialBridge.mount is false: the external plugin could never write containerd's hosts.toml" -}}
{{- end -}}
{{- end -}}

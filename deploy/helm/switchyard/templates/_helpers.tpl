{{/* The chart's name, shortened to the 63 characters a Kubernetes name may have. */}}
{{- define "switchyard.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's resource name: the release name, with the chart's name unless the release already has it. */}}
{{- define "switchyard.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "switchyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "switchyard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "switchyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret the pods take their environment from: the chart's own, or the one named by secrets.existingSecret. */}}
{{- define "switchyard.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- include "switchyard.fullname" . }}
{{- end }}
{{- end }}

{{- define "switchyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Refuse values that render a broken deployment. Several pods (or workers) on SQLite would each have their own store,
and without Redis each would enforce its own copy of every budget; access: key with no key fails the config check.
Only the chart's own Secret can be checked: an existingSecret is taken on trust.
*/}}
{{- define "switchyard.validate" -}}
{{- $s := .Values.secrets.values }}
{{- $several := or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) (gt (int .Values.workers) 1) }}
{{- if and .Values.secrets.create (not .Values.secrets.existingSecret) }}
{{- if and $several (not $s.SWITCHYARD_STORE_URL) }}
{{- fail "several replicas (replicaCount > 1, autoscaling or workers > 1) share one store: set secrets.values.SWITCHYARD_STORE_URL to a postgresql:// URL" }}
{{- end }}
{{- if and $several (not $s.SWITCHYARD_REDIS_URL) }}
{{- fail "several replicas enforce budgets and rate limits together only through Redis: set secrets.values.SWITCHYARD_REDIS_URL (redis://host:6379/0)" }}
{{- end }}
{{- if and (eq .Values.metrics.access "key") (not $s.SWITCHYARD_METRICS_KEY) (not $s.SWITCHYARD_MASTER_KEY) }}
{{- fail "metrics.access: key needs secrets.values.SWITCHYARD_METRICS_KEY (or SWITCHYARD_MASTER_KEY), or set metrics.access: loopback" }}
{{- end }}
{{- end }}
{{- if not (has .Values.metrics.access (list "key" "loopback")) }}
{{- fail "metrics.access must be key or loopback" }}
{{- end }}
{{- end }}

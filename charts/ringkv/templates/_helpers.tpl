{{/* Names and labels shared by every template of the chart. */}}

{{- define "ringkv.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-ringkv-operator, or <release>-operator when the release name already says ringkv. */}}
{{- define "ringkv.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s-operator" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ringkv.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ringkv.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ringkv.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "ringkv.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ringkv.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "ringkv.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "ringkv.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Rules on namespaced resources: a ClusterRole's when watching all namespaces, else a Role's. */}}
{{- define "ringkv.namespacedRules" -}}
- apiGroups: [ringkv.io]
  resources: [kvclusters]
  verbs: [get, list, watch, patch, update]
- apiGroups: [ringkv.io]
  resources: [kvclusters/status, kvclusters/scale]
  verbs: [get, patch, update]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, delete]
- apiGroups: [""]
  resources: [secrets]
  # never list/watch: the operator reads only the Secrets spec.auth and spec.tls name and its
  # own <cluster>-raft; create: that Raft password Secret (created once, never updated)
  verbs: [get, create]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, patch, delete]  # patch: the retired-at-epoch annotation (retain)
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Backup and restore: KVClusterBackup objects, the Jobs that run `ringkv backup|restore`, the
# backup volumes (created per backup), and the Jobs' logs (where the backup's result is read).
- apiGroups: [ringkv.io]
  resources: [kvclusterbackups]
  verbs: [get, list, watch, patch, update]
- apiGroups: [ringkv.io]
  resources: [kvclusterbackups/status]
  verbs: [get, patch, update]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [create]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
{{- end -}}

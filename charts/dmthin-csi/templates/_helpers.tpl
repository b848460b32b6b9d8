{{/*
Every value is read through a default here or in the templates, so a values file (or a --set
key=null) that leaves a key out renders as if values.yaml's default were there.
*/}}

{{- define "dmthin-csi.image" -}}
{{- $img := .Values.image | default dict -}}
{{ $img.repository | default "ghcr.io/dmthin-csi/dmthin-csi" }}:{{ $img.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "dmthin-csi.imagePullPolicy" -}}
{{ (.Values.image | default dict).pullPolicy | default "IfNotPresent" }}
{{- end -}}

{{- define "dmthin-csi.sidecarPullPolicy" -}}
{{ (.Values.sidecars | default dict).pullPolicy | default "IfNotPresent" }}
{{- end -}}

{{/* A sidecar's values: (list $ "provisioner"). */}}
{{- define "dmthin-csi.sidecar" -}}
{{- $all := (index . 0).Values.sidecars | default dict -}}
{{- toYaml (index $all (index . 1) | default dict) -}}
{{- end -}}

{{/* Labels every object carries; the component's, when given: (list $ "controller"). */}}
{{- define "dmthin-csi.labels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: dmthin-csi
app.kubernetes.io/instance: {{ $.Release.Name }}
{{- with index . 1 }}
app.kubernetes.io/component: {{ . }}
{{- end }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
helm.sh/chart: {{ $.Chart.Name }}-{{ $.Chart.Version }}
{{- end -}}

{{/* Labels a workload selects its pods by (immutable: never add to them). */}}
{{- define "dmthin-csi.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: dmthin-csi
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/*
Defaults of the security settings, used when values leave the key out (a values.yaml trimmed
by hand, a --set controller=null): a left-out key must never mean a root controller.
*/}}
{{- define "dmthin-csi.controllerPodSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "dmthin-csi.controllerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* (list $values "key" "default template"): the value at key, else the named default. */}}
{{- define "dmthin-csi.orDefault" -}}
{{- $v := index . 0 -}}
{{- if hasKey $v (index . 1) -}}
{{- with index $v (index . 1) }}{{ toYaml . }}{{ end -}}
{{- else -}}
{{- include (index . 2) dict | fromYaml | toYaml -}}
{{- end -}}
{{- end -}}

{{/* Flags of `dmthin-csi node` for one pool spec (a map from values.yaml pools). */}}
{{- define "dmthin-csi.poolFlags" -}}
{{- with .name }} --pool-name={{ . }}{{ end }}
{{- if .existing }} --pool-existing{{ end }}
{{- with .dataDevice }} --pool-data-device={{ . }}{{ end }}
{{- with .metadataDevice }} --pool-metadata-device={{ . }}{{ end }}
{{- with .loopDataSize }} --loop-data-size={{ . }}{{ end }}
{{- with .loopMetadataSize }} --loop-metadata-size={{ . }}{{ end }}
{{- with .blockSize }} --block-size={{ . }}{{ end }}
{{- with .defaultFs }} --default-fs={{ . }}{{ end }}
{{- with .overprovisionRatio }} --overprovision-ratio={{ . }}{{ end }}
{{- with .growMax }} --pool-grow-max={{ . }}{{ end }}
{{- end -}}

{{/*
A startup probe over a liveness probe's endpoint (the named port's /healthz): up to 5 min for the
first answer, so liveness never restarts a start midway, which would only begin it again.
*/}}
{{- define "dmthin-csi.startupProbe" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ . }}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 60
{{- end -}}

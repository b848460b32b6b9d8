{{/* Only Go text/template built-ins here: see values.yaml. */}}

{{- define "dmthin-csi.image" -}}
{{ .Values.image.repository }}:{{ if .Values.image.tag }}{{ .Values.image.tag }}{{ else }}{{ .Chart.AppVersion }}{{ end }}
{{- end -}}

{{/* Flags of `dmthin-csi node` for one pool spec (a map from values.yaml pools). */}}
{{- define "dmthin-csi.poolFlags" -}}
{{- with index . "name" }} --pool-name={{ . }}{{ end }}
{{- if index . "existing" }} --pool-existing{{ end }}
{{- with index . "dataDevice" }} --pool-data-device={{ . }}{{ end }}
{{- with index . "metadataDevice" }} --pool-metadata-device={{ . }}{{ end }}
{{- with index . "loopDataSize" }} --loop-data-size={{ . }}{{ end }}
{{- with index . "loopMetadataSize" }} --loop-metadata-size={{ . }}{{ end }}
{{- with index . "blockSize" }} --block-size={{ . }}{{ end }}
{{- with index . "defaultFs" }} --default-fs={{ . }}{{ end }}
{{- with index . "overprovisionRatio" }} --overprovision-ratio={{ . }}{{ end }}
{{- with index . "growMax" }} --pool-grow-max={{ . }}{{ end }}
{{- end -}}

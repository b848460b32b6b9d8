{{/*
Pieces of the controller and node workloads for snapshotMetadata.enabled, each already indented for
where controller.yaml and node.yaml include it (Go's text/template has no indent function).
*/}}

{{/* The controller's driver container: serve SnapshotMetadata by forwarding to the nodes. */}}
{{- define "dmthin-csi.snapshotMetadata.controllerEnv" }}
{{- if .Values.snapshotMetadata.enabled }}
            - name: DMTHIN_SNAPSHOT_METADATA
              value: "true"
            - name: DMTHIN_CHANNEL_TOKEN_FILE
              value: /var/run/secrets/dmthin.csi.io/channel/token
{{- end }}
{{- end }}

{{- define "dmthin-csi.snapshotMetadata.controllerMounts" }}
{{- if .Values.snapshotMetadata.enabled }}
            - name: channel-token
              mountPath: /var/run/secrets/dmthin.csi.io/channel
              readOnly: true
{{- end }}
{{- end }}

{{/* The external-snapshot-metadata sidecar: serves backup tools over TLS, calls the driver's socket. */}}
{{- define "dmthin-csi.snapshotMetadata.sidecar" }}
{{- if .Values.snapshotMetadata.enabled }}
        - name: csi-snapshot-metadata
          image: {{ .Values.snapshotMetadata.image }}
          imagePullPolicy: {{ .Values.sidecars.pullPolicy }}
          args:
            - --csi-address=/csi/csi.sock
            - --port={{ .Values.snapshotMetadata.port }}
            - --tls-cert=/etc/dmthin-csi/snapshot-metadata-tls/tls.crt
            - --tls-key=/etc/dmthin-csi/snapshot-metadata-tls/tls.key
            - --timeout=120s
            - --v=2
          ports:
            - name: snapshot-meta
              containerPort: {{ .Values.snapshotMetadata.port }}
              protocol: TCP
          readinessProbe:
            tcpSocket:
              port: snapshot-meta
            periodSeconds: 10
          volumeMounts:
            - name: socket-dir
              mountPath: /csi
            - name: snapshot-metadata-tls
              mountPath: /etc/dmthin-csi/snapshot-metadata-tls
              readOnly: true
{{- end }}
{{- end }}

{{/*
The channel token: a ServiceAccount token for the channel's audience only, so a node agent that
sees it cannot use it against the API server; the kubelet rotates it.
*/}}
{{- define "dmthin-csi.snapshotMetadata.volumes" }}
{{- if .Values.snapshotMetadata.enabled }}
        - name: channel-token
          projected:
            sources:
              - serviceAccountToken:
                  audience: dmthin.csi.io/channel
                  expirationSeconds: 3600
                  path: token
        - name: snapshot-metadata-tls
          secret:
            secretName: {{ if .Values.snapshotMetadata.tls.existingSecret }}{{ .Values.snapshotMetadata.tls.existingSecret }}{{ else }}{{ .Release.Name }}-snapshot-metadata-tls{{ end }}
{{- end }}
{{- end }}

{{/* The node agent's channel: where it listens, the address it publishes, the one caller it admits. */}}
{{- define "dmthin-csi.snapshotMetadata.nodeEnv" }}
{{- if .Values.snapshotMetadata.enabled }}
            - name: POD_IP
              valueFrom:
                fieldRef:
                  fieldPath: status.podIP
            - name: DMTHIN_CHANNEL_PORT
              value: "{{ .Values.snapshotMetadata.channelPort }}"
            - name: DMTHIN_CHANNEL_CLIENT
              value: system:serviceaccount:{{ .Release.Namespace }}:{{ .Release.Name }}-controller
{{- end }}
{{- end }}

{{- define "dmthin-csi.snapshotMetadata.nodePorts" }}
{{- if .Values.snapshotMetadata.enabled }}
            - name: channel
              containerPort: {{ .Values.snapshotMetadata.channelPort }}
              protocol: TCP
{{- end }}
{{- end }}

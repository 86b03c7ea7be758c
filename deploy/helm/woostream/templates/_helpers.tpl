{{/* Names: "<release>-woostream" unless the release already says woostream. */}}
{{- define "woostream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains "woostream" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-woostream" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "woostream.labels" -}}
app.kubernetes.io/name: woostream
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "producer"). */}}
{{- define "woostream.selector" -}}
app.kubernetes.io/name: woostream
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "woostream.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The configuration every role shares, with what the chart decides (ports, paths). */}}
{{- define "woostream.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- $_ := set $c "ops" (merge (dict "listen" "0.0.0.0:9090") ($c.ops | default dict)) -}}
{{- /* In a pod the spool is drained for up to 10 minutes at shutdown (a scale-in during a
       Kafka incident holds until the brokers return), unless the configuration says otherwise;
       the producer's termination grace follows it. */ -}}
{{- $producer := merge (dict "listen" "0.0.0.0:8080" "spool_dir" "/var/lib/woostream/spool") ($c.producer | default dict) (dict "shutdown_drain_secs" 600) -}}
{{- $_ := set $c "producer" $producer -}}
{{- /* Enricher pods have stable names (a StatefulSet): static members of their group, so a
       restarted pod gets its partitions back without moving anyone else's. */ -}}
{{- $_ := set $c "enricher" (merge ($c.enricher | default dict) (dict "static_membership" true)) -}}
{{- $c | toYaml -}}
{{- end -}}

{{/* Pod-level settings every role shares. */}}
{{- define "woostream.podSpec" -}}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{ toYaml . | nindent 2 }}
{{- end }}
securityContext: {{ toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{ toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Container settings every role shares: image, secrets from the existing Secret, config,
     probes on the ops port, security context. */}}
{{- define "woostream.container" -}}
{{ include "woostream.containerBase" . }}
readinessProbe:
  httpGet: { path: /readyz, port: ops }
  periodSeconds: 5
  failureThreshold: 3
livenessProbe:
  httpGet: { path: /healthz, port: ops }
  periodSeconds: 10
  failureThreshold: 6
startupProbe:
  # A role restores its state from Kafka before it is live; give it time.
  httpGet: { path: /healthz, port: ops }
  periodSeconds: 5
  failureThreshold: 60
{{- end -}}

{{/* The container settings a one-off command (a Job) shares with the roles: no ops port, so
     no probes. */}}
{{- define "woostream.containerBase" -}}
image: {{ include "woostream.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- if .Values.existingSecret }}
envFrom:
  - secretRef:
      name: {{ .Values.existingSecret }}
{{- end }}
securityContext: {{ toYaml .Values.securityContext | nindent 2 }}
{{- end -}}

{{- define "woostream.volumeMounts" -}}
- name: config
  mountPath: /etc/woostream
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.kafkaTls.secretName }}
- name: kafka-tls
  mountPath: /etc/woostream-kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "woostream.volumes" -}}
- name: config
  configMap:
    name: {{ include "woostream.fullname" . }}
- name: tmp
  emptyDir: { sizeLimit: 64Mi }
{{- if .Values.kafkaTls.secretName }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafkaTls.secretName }}
{{- end }}
{{- end -}}

{{/* Restart pods when their configuration changes. */}}
{{- /* Of the one file a role reads (dict "root" . "file" "woostream.yaml"): a Slack rule
       changed restarts that workspace's sink, not every role. */ -}}
{{- define "woostream.configChecksum" -}}
{{- $configmap := include (print .root.Template.BasePath "/configmap.yaml") .root | fromYaml -}}
checksum/config: {{ index $configmap.data .file | sha256sum }}
{{- end -}}

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
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "producer"). */}}
{{- define "woostream.selector" -}}
app.kubernetes.io/name: woostream
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* repository:tag, or repository@digest when image.digest is set (tag then ignored). */}}
{{- define "woostream.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
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

{{/* The values of a role (producer, enricher, slack, crm, crm-inbound, rest, insight,
     spool-drain): its own section of the values. */}}
{{- define "woostream.roleValues" -}}
{{- $v := .root.Values -}}
{{- $section := dict "producer" $v.producer "spool-drain" $v.producer "enricher" $v.enricher "slack" $v.slack "crm" $v.crm "crm-inbound" $v.crm "rest" $v.rest "insight" $v.insight -}}
{{- index $section .role | toYaml -}}
{{- end -}}

{{/* Pod metadata of a role: (dict "root" $ "role" "producer" "component" "producer" "file"
     "woostream.yaml"). Labels: the selector's, commonLabels, podLabels (global, then the
     role's). Annotations: the checksum of the one file the role reads, podAnnotations, and the
     reloader's when secretReloader is on. */}}
{{- define "woostream.podMetadata" -}}
{{- $v := .root.Values -}}
{{- $role := include "woostream.roleValues" . | fromYaml -}}
labels:
  {{- include "woostream.selector" (dict "root" .root "component" .component) | nindent 2 }}
  {{- with merge (deepCopy ($role.podLabels | default dict)) ($v.podLabels | default dict) ($v.commonLabels | default dict) }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  {{- include "woostream.configChecksum" (dict "root" .root "file" .file) | nindent 2 }}
  {{- with merge (deepCopy ($role.podAnnotations | default dict)) ($v.podAnnotations | default dict) }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- if $v.secretReloader.enabled }}
  {{- $secrets := list }}
  {{- with include "woostream.secretName" . }}{{ $secrets = append $secrets . }}{{ end }}
  {{- with $v.kafkaTls.secretName }}{{ $secrets = append $secrets . }}{{ end }}
  {{- with $v.kafkaTls.caSecret.name }}{{ $secrets = append $secrets . }}{{ end }}
  {{- with $v.kafkaTls.clientSecret.name }}{{ $secrets = append $secrets . }}{{ end }}
  {{- if $secrets }}
  # Stakater Reloader rolls the pods when one of these Secrets changes.
  secret.reloader.stakater.com/reload: {{ $secrets | uniq | join "," | quote }}
  {{- end }}
  {{- end }}
{{- end -}}

{{/* Pod-level settings of a role (same context as woostream.podMetadata). The role's
     affinity, topologySpreadConstraints, priorityClassName, nodeSelector and tolerations
     win over the global ones; a spread constraint without a labelSelector gets the role's. */}}
{{- define "woostream.podSpec" -}}
{{- $v := .root.Values -}}
{{- $role := include "woostream.roleValues" . | fromYaml -}}
{{- /* A hook before install runs before the chart's own ServiceAccount exists. */}}
{{- if not (and .beforeInstall $v.serviceAccount.create) }}
serviceAccountName: {{ include "woostream.serviceAccountName" .root }}
{{- end }}
automountServiceAccountToken: {{ $v.serviceAccount.automountToken }}
{{- with $v.imagePullSecrets }}
imagePullSecrets: {{ toYaml . | nindent 2 }}
{{- end }}
securityContext: {{ toYaml $v.podSecurityContext | nindent 2 }}
{{- with $role.priorityClassName | default $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $role.nodeSelector | default $v.nodeSelector }}
nodeSelector: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with $role.tolerations | default $v.tolerations }}
tolerations: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with $role.affinity | default $v.affinity }}
affinity: {{ toYaml . | nindent 2 }}
{{- end }}
{{- $spread := $role.topologySpreadConstraints | default $v.topologySpreadConstraints }}
{{- if $spread }}
topologySpreadConstraints:
  {{- range $spread }}
  {{- $c := deepCopy . }}
  {{- if not $c.labelSelector }}
  {{- $_ := set $c "labelSelector" (dict "matchLabels" (include "woostream.selector" (dict "root" $.root "component" $.component) | fromYaml)) }}
  {{- end }}
  - {{ toYaml $c | nindent 4 | trim }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "woostream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "woostream.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The Secret a role's keys come from: the role's existingSecret, else the global one. */}}
{{- define "woostream.secretName" -}}
{{- $role := include "woostream.roleValues" . | fromYaml -}}
{{- $role.existingSecret | default .root.Values.existingSecret -}}
{{- end -}}

{{/* The environment variables a piece of configuration reads its secrets from ({ env: NAME }
     and *_env keys), one per line. */}}
{{- define "woostream.envNames" -}}
{{- if kindIs "map" . -}}
{{- range $k, $v := . -}}
{{- if and (or (eq $k "env") (hasSuffix "_env" $k)) (kindIs "string" $v) -}}
{{ $v }}{{ "\n" }}
{{- else -}}
{{ include "woostream.envNames" $v }}
{{- end -}}
{{- end -}}
{{- else if kindIs "slice" . -}}
{{- range . }}{{ include "woostream.envNames" . }}{{ end -}}
{{- end -}}
{{- end -}}

{{/* The parts of the configuration whose secrets a role reads (what `check_secrets` checks
     for the role in the binary): each pod gets only these keys of the Secret. */}}
{{- define "woostream.roleSections" -}}
{{- $own := dict "producer" "shops producer privacy" "spool-drain" "shops producer privacy" "enricher" "privacy" "rest" "shops privacy" "crm-inbound" "crm shops privacy" "slack" "slack" "crm" "crm" "insight" "insight" "check" "" -}}
kafka schema_registry ops http {{ index $own .role }}
{{- end -}}

{{/* `env:` of a role's container: each secret its configuration names, from the role's
     Secret (a key per variable), then extraEnv; "file" is the configuration file the role
     reads. The "check" role (the hooks that run check-config) gets
     every secret the configuration names. */}}
{{- define "woostream.env" -}}
{{- $names := list -}}
{{- $secret := include "woostream.secretName" . -}}
{{- $files := (include (print .root.Template.BasePath "/configmap.yaml") .root | fromYaml).data -}}
{{- if $secret -}}
{{- if eq .role "check" -}}
{{- range $file, $text := $files -}}
{{- $names = concat $names (splitList "\n" (include "woostream.envNames" ($text | fromYaml))) -}}
{{- end -}}
{{- else -}}
{{- $config := index $files .file | fromYaml -}}
{{- range $section := splitList " " (include "woostream.roleSections" .) -}}
{{- if and $section (hasKey $config $section) -}}
{{- $names = concat $names (splitList "\n" (include "woostream.envNames" (index $config $section))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $names = $names | compact | uniq | sortAlpha -}}
{{- $extra := .root.Values.extraEnv | default list -}}
{{- if or $names $extra }}
env:
  {{- range $names }}
  - name: {{ . }}
    valueFrom: { secretKeyRef: { name: {{ $secret }}, key: {{ . }} } }
  {{- end }}
  {{- with $extra }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- with .root.Values.extraEnvFrom }}
envFrom: {{ toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Container settings every role shares: image, its secrets, probes on the ops port
     (probes.* and the role's probes override the defaults), security context. */}}
{{- define "woostream.container" -}}
{{ include "woostream.containerBase" . }}
{{- $role := include "woostream.roleValues" . | fromYaml }}
{{- $probes := mergeOverwrite (dict) (deepCopy .root.Values.probes) ($role.probes | default dict) }}
readinessProbe:
  httpGet: { path: /readyz, port: ops }
  {{- toYaml $probes.readiness | nindent 2 }}
livenessProbe:
  httpGet: { path: /healthz, port: ops }
  {{- toYaml $probes.liveness | nindent 2 }}
startupProbe:
  # A role restores its state from Kafka before it is live; give it time.
  httpGet: { path: /healthz, port: ops }
  {{- toYaml $probes.startup | nindent 2 }}
{{- end -}}

{{/* The container settings a one-off command (a Job, a hook) shares with the roles: no ops
     port, so no probes. */}}
{{- define "woostream.containerBase" -}}
image: {{ include "woostream.image" .root }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
{{- include "woostream.env" . }}
securityContext: {{ toYaml .root.Values.securityContext | nindent 2 }}
{{- end -}}

{{- define "woostream.kafkaTlsMounted" -}}
{{- if or .Values.kafkaTls.secretName .Values.kafkaTls.caSecret.name .Values.kafkaTls.clientSecret.name -}}true{{- end -}}
{{- end -}}

{{- define "woostream.volumeMounts" -}}
- name: config
  mountPath: /etc/woostream
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if include "woostream.kafkaTlsMounted" . }}
- name: kafka-tls
  mountPath: /etc/woostream-kafka-tls
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Kafka's TLS files under /etc/woostream-kafka-tls: one Secret with ca.crt, tls.crt and
     tls.key (kafkaTls.secretName), or Strimzi's two: the cluster CA's Secret and the
     KafkaUser's (kafkaTls.caSecret, kafkaTls.clientSecret), projected to the same names. */}}
{{- define "woostream.volumes" -}}
- name: config
  configMap:
    name: {{ include "woostream.fullname" . }}
- name: tmp
  emptyDir: { sizeLimit: 64Mi }
{{- $tls := .Values.kafkaTls }}
{{- if $tls.secretName }}
- name: kafka-tls
  secret:
    secretName: {{ $tls.secretName }}
{{- else if or $tls.caSecret.name $tls.clientSecret.name }}
- name: kafka-tls
  projected:
    sources:
      {{- with $tls.caSecret }}{{ if .name }}
      - secret:
          name: {{ .name }}
          items: [{ key: {{ .key | default "ca.crt" }}, path: ca.crt }]
      {{- end }}{{ end }}
      {{- with $tls.clientSecret }}{{ if .name }}
      - secret:
          name: {{ .name }}
          items:
            - { key: {{ .certKey | default "user.crt" }}, path: tls.crt }
            - { key: {{ .keyKey | default "user.key" }}, path: tls.key }
      {{- end }}{{ end }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Restart pods when their configuration changes. */}}
{{- /* Of the one file a role reads (dict "root" . "file" "woostream.yaml"): a Slack rule
       changed restarts that workspace's sink, not every role. */ -}}
{{- define "woostream.configChecksum" -}}
{{- $configmap := include (print .root.Template.BasePath "/configmap.yaml") .root | fromYaml -}}
checksum/config: {{ index $configmap.data .file | sha256sum }}
{{- end -}}

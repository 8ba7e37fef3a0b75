{{/*
Names and labels follow src/mainsail/naming.py: <release>-<component>, the recommended
app.kubernetes.io labels, part-of "mainsail".
*/}}
{{- define "mainsail.fullname" -}}
{{- $release := .root.Release.Name -}}
{{- if hasSuffix .component $release -}}
{{- $release | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" $release .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mainsail.selectorLabels" -}}
app.kubernetes.io/name: mainsail
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mainsail.labels" -}}
{{ include "mainsail.selectorLabels" . }}
app.kubernetes.io/part-of: mainsail
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "mainsail.metadata" -}}
name: {{ include "mainsail.fullname" . }}
namespace: {{ .root.Release.Namespace }}
labels:
  {{- include "mainsail.labels" . | nindent 2 }}
{{- end -}}

{{/* Image of a Mainsail runtime env: registry/name:tag, never latest. */}}
{{- define "mainsail.image" -}}
{{- $v := .root.Values -}}
{{- $tag := $v.global.imageTag | default .root.Chart.AppVersion -}}
{{- if eq $tag "latest" -}}
{{- fail "global.imageTag must be an explicit version, not 'latest'" -}}
{{- end -}}
{{- printf "%s/%s:%s" $v.global.imageRegistry (index $v.images .env) $tag -}}
{{- end -}}

{{/* Pod-level security context of the Pod Security "restricted" profile. */}}
{{- define "mainsail.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security context: no privilege escalation, no capabilities, read-only root. */}}
{{- define "mainsail.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
checkov suppressions shared by every workload, each with its reason:
- CKV_K8S_43 (image digest): images are pinned by exact version tag; kind loads local builds
  by tag, and the production overlay pins digests with kustomize `images`.
- CKV_K8S_15 (pull policy Always): IfNotPresent with immutable version tags; Always would
  break kind, whose images are loaded into the nodes and not in a registry.
*/}}
{{- define "mainsail.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_43=Images are pinned by exact version tag; the production overlay pins digests with kustomize images
checkov.io/skip2: CKV_K8S_15=IfNotPresent with immutable version tags; Always breaks images loaded into kind nodes
{{- end -}}

{{/* S3 endpoint as seen from inside the cluster. */}}
{{- define "mainsail.s3Endpoint" -}}
{{- if .Values.s3.existing.enabled -}}
{{- required "s3.existing.endpoint is required when s3.existing.enabled is true" .Values.s3.existing.endpoint -}}
{{- else -}}
{{- printf "http://%s.%s.svc.cluster.local:9000" (include "mainsail.fullname" (dict "root" . "component" "minio")) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. */}}
{{- define "mainsail.s3SecretName" -}}
{{- if .Values.s3.existing.enabled -}}
{{- required "s3.existing.secretName is required when s3.existing.enabled is true" .Values.s3.existing.secretName -}}
{{- else if .Values.minio.auth.existingSecret -}}
{{- .Values.minio.auth.existingSecret -}}
{{- else -}}
{{- include "mainsail.fullname" (dict "root" . "component" "s3") -}}
{{- end -}}
{{- end -}}

{{- define "mainsail.rcloneSecretName" -}}
{{- if or .Values.s3.existing.enabled .Values.minio.auth.existingSecret -}}
{{- required "s3.rcloneSecretName is required with an existing S3 or minio.auth.existingSecret" .Values.s3.rcloneSecretName -}}
{{- else -}}
{{- include "mainsail.fullname" (dict "root" . "component" "s3-rclone") -}}
{{- end -}}
{{- end -}}

{{- define "mainsail.redisHost" -}}
{{- if .Values.redis.enabled -}}
{{- printf "%s.%s.svc.cluster.local" (include "mainsail.fullname" (dict "root" . "component" "redis")) .Release.Namespace -}}
{{- else -}}
{{- required "redis.external.host is required when redis.enabled is false" .Values.redis.external.host -}}
{{- end -}}
{{- end -}}

{{- define "mainsail.redisPort" -}}
{{- if .Values.redis.enabled -}}6379{{- else -}}{{ .Values.redis.external.port }}{{- end -}}
{{- end -}}

{{/* Environment every Mainsail process reads: S3 endpoint and credentials. */}}
{{- define "mainsail.s3Env" -}}
- name: MAINSAIL_S3_ENDPOINT
  value: {{ include "mainsail.s3Endpoint" . | quote }}
- name: MAINSAIL_S3_BUCKET
  value: {{ .Values.s3.bucket | quote }}
{{- with .Values.s3.existing.region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- /* AWS_* for boto3 (Feast) and the drift sidecar, MAINSAIL_S3_* for the model registry
(registry.access_key_env / secret_key_env); both from the same Secret. */}}
{{- range $var, $key := dict "AWS_ACCESS_KEY_ID" "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" "AWS_SECRET_ACCESS_KEY" "MAINSAIL_S3_ACCESS_KEY" "AWS_ACCESS_KEY_ID" "MAINSAIL_S3_SECRET_KEY" "AWS_SECRET_ACCESS_KEY" }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ include "mainsail.s3SecretName" $ }}
      key: {{ $key }}
{{- end }}
{{- end -}}

{{- define "mainsail.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "mainsail.authSecretName" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else -}}
{{- include "mainsail.fullname" (dict "root" . "component" "auth") -}}
{{- end -}}
{{- end -}}

{{- /* One service token from the auth Secret as an env var: (list root VAR key). */}}
{{- define "mainsail.tokenEnv" -}}
{{- $root := index . 0 -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "mainsail.authSecretName" $root }}
      key: {{ index . 2 }}
{{- end -}}

{{- /* Logs, traces and redaction of the serving path (observability, privacy): what
mainsail.core.telemetry.setup reads in the gateway, the runtime and the drift sidecar. */}}
{{- define "mainsail.telemetryEnv" -}}
- name: MAINSAIL_REDACT
  value: {{ .Values.privacy.redact | quote }}
{{- if .Values.observability.jsonLogs }}
- name: MAINSAIL_JSON_LOGS
  value: "1"
{{- end }}
{{- with .Values.observability.tracing }}
- name: MAINSAIL_TRACING
  value: {{ . | quote }}
- name: MAINSAIL_TRACE_SAMPLE
  value: {{ $.Values.observability.sampleRatio | quote }}
{{- if $.Values.observability.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $.Values.observability.otlpEndpoint | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- /* The registry's signature keys for a publisher: the public key(s) every load checks
(serving.registryPublicKeys) and the signing key from registrySigning.existingSecret. */}}
{{- define "mainsail.registryKeysEnv" -}}
- name: MAINSAIL_REGISTRY_PUBLIC_KEYS
  value: {{ .Values.serving.registryPublicKeys | quote }}
{{- with .Values.registrySigning.existingSecret }}
- name: MAINSAIL_REGISTRY_SIGNING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: signing-key
{{- end }}
{{- end -}}

{{- /* The feedback store's SQLAlchemy URL: gateway.feedbackUrl, else the chart's Postgres
(postgres.enabled; no password in it: libpq reads PGPASSWORD, mainsail.postgresEnv), else none. */}}
{{- define "mainsail.feedbackUrl" -}}
{{- if .Values.gateway.feedbackUrl -}}
{{- .Values.gateway.feedbackUrl -}}
{{- else if .Values.postgres.enabled -}}
{{- printf "postgresql+psycopg://%s@%s.%s.svc.cluster.local:5432/%s" .Values.postgres.user (include "mainsail.fullname" (dict "root" . "component" "postgres")) .Release.Namespace .Values.postgres.database -}}
{{- end -}}
{{- end -}}

{{- /* PGPASSWORD from the Postgres Secret, for a client of the chart's feedback store. */}}
{{- define "mainsail.postgresEnv" -}}
{{- if and .Values.postgres.enabled (not .Values.gateway.feedbackUrl) -}}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgres.existingSecret }}
      key: password
{{- end -}}
{{- end -}}

{{- /* With the chart's Postgres, an init container that waits for it (a line per try): it may
still be initialising when a client starts, and waiting where no liveness probe runs beats
crash-looping the client. (list root resources) */}}
{{- define "mainsail.waitForFeedbackStore" -}}
{{- $root := index . 0 -}}
{{- with include "mainsail.postgresEnv" $root }}
initContainers:
  - name: wait-for-feedback-store
    image: {{ include "mainsail.image" (dict "root" $root "env" "pipeline") }}
    imagePullPolicy: {{ $root.Values.global.imagePullPolicy }}
    command: ["python", "-m", "mainsail.feedback", "wait", {{ include "mainsail.feedbackUrl" $root | quote }}, "--timeout", {{ $root.Values.gateway.storeWaitSeconds | quote }}]
    env:
      {{- . | nindent 6 }}
      - name: HOME
        value: /tmp
    resources:
      {{- toYaml (index $ 1) | nindent 6 }}
    securityContext:
      {{- include "mainsail.containerSecurityContext" $root | nindent 6 }}
{{- end }}
{{- end -}}

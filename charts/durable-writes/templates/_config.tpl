{{/* The ConfigMap's data: non-secret settings only (secret names are refused by the schema). */}}
{{- define "dw.configData" -}}
ENVIRONMENT: {{ .Values.config.environment | quote }}
LOG_LEVEL: {{ .Values.config.logLevel | quote }}
LOG_JSON: "true"
REDIS_KEY_PREFIX: {{ .Values.redis.keyPrefix | quote }}
{{- if .Values.redis.sentinel.enabled }}
REDIS_SENTINEL_MASTER: {{ .Values.redis.sentinel.masterName | quote }}
{{- end }}
ELASTICSEARCH_URL: {{ .Values.config.elasticsearchUrl | quote }}
CHATBOT_URL: {{ .Values.config.chatbotUrl | quote }}
PUBLIC_API_URL: {{ .Values.config.publicApiUrl | quote }}
{{- with .Values.config.authJwksUrl }}
AUTH_JWKS_URL: {{ . | quote }}
{{- end }}
{{- with .Values.config.authIssuer }}
AUTH_ISSUER: {{ . | quote }}
{{- end }}
{{- with .Values.config.authAudience }}
AUTH_AUDIENCE: {{ . | quote }}
{{- end }}
STORAGE_BACKEND: {{ .Values.storage.backend | quote }}
{{- if eq .Values.storage.backend "local" }}
STORAGE_LOCAL_DIR: {{ .Values.storage.localDir | quote }}
{{- else }}
S3_BUCKET: {{ .Values.storage.s3Bucket | quote }}
S3_REGION: {{ .Values.storage.s3Region | quote }}
{{- with .Values.storage.s3EndpointUrl }}
S3_ENDPOINT_URL: {{ . | quote }}
{{- end }}
{{- end }}
API_HOST: "0.0.0.0"
API_PORT: {{ .Values.ports.api | quote }}
API_WORKERS: {{ .Values.api.workers | quote }}
FLOWER_HOST: "0.0.0.0"
FLOWER_PORT: {{ .Values.ports.flower | quote }}
METRICS_HOST: "0.0.0.0"
ES_WORKER_METRICS_PORT: {{ .Values.ports.esWorkerMetrics | quote }}
HTTP_WORKER_METRICS_PORT: {{ .Values.ports.httpWorkerMetrics | quote }}
SCHEDULER_METRICS_PORT: {{ .Values.ports.schedulerMetrics | quote }}
PROMETHEUS_MULTIPROC_DIR: /run/metrics
WORKER_SOFT_SHUTDOWN_TIMEOUT_S: {{ .Values.config.workerSoftShutdownTimeoutS | quote }}
WORKER_HEARTBEAT_FILE: /tmp/worker.alive
WORKER_HEARTBEAT_MAX_AGE_S: {{ .Values.config.workerHeartbeatMaxAgeS | quote }}
# Billiard reads it at import: SIGTERM becomes Celery's bounded (soft) shutdown.
REMAP_SIGTERM: SIGQUIT
{{- range $name, $value := .Values.config.extraEnv }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end }}

{{/* The Secret's data; dict "ctx" . "only" (list ...) keeps just those keys. */}}
{{- define "dw.secretData" -}}
{{- $s := .ctx.Values.secrets }}
{{- $only := .only }}
{{- $map := dict "DATABASE_URL" $s.databaseUrl "REDIS_PASSWORD" $s.redisPassword "SECRETS_KEY" $s.secretsKey "AUTH_JWT_SECRET" $s.authJwtSecret "ELASTICSEARCH_API_KEY" $s.elasticsearchApiKey "CHATBOT_API_TOKEN" $s.chatbotApiToken "FLOWER_BASIC_AUTH" $s.flowerBasicAuth }}
{{- range $name, $value := merge $map $s.extra }}
{{- if and $value (or (not $only) (has $name $only)) }}
{{ $name }}: {{ $value | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}

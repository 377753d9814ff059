{{/* Names and labels (selector labels never change between releases). */}}
{{- define "dw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dw.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* dw.labels: dict "ctx" . "component" "api" */}}
{{- define "dw.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{ include "dw.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: durable-writes
{{- end }}

{{- define "dw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dw.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{- define "dw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dw.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when a digest is given (what runs can then never change under the
     same name), else repository:tag. dict "image" <values.image> "tag" <default tag> */}}
{{- define "dw.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (.image.tag | default .tag) }}
{{- end }}
{{- end }}

{{- define "dw.image" -}}
{{ include "dw.imageRef" (dict "image" .Values.image "tag" .Chart.AppVersion) }}
{{- end }}

{{- define "dw.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "dw.fullname" .) }}
{{- end }}

{{/* The queue workers: values key -> Celery app, queue, metrics port setting. The queue
     names are services/core/taskdefs.py's Queue values (tests/chart checks them). */}}
{{- define "dw.workerKinds" -}}
es:
  component: es-worker
  app: services.es_worker
  queue: es
  portKey: esWorkerMetrics
http:
  component: http-worker
  app: services.http_worker
  queue: http
  portKey: httpWorkerMetrics
{{- end }}

{{/* The list KEDA watches: the key kombu writes for a queue, prefix included. */}}
{{- define "dw.listName" -}}
{{- printf "%s%s" .root.Values.redis.keyPrefix .queue }}
{{- end }}

{{/* REDIS_URL: $(REDIS_PASSWORD) is expanded by the kubelet from the Secret, so the password
     never appears in a rendered non-Secret object. */}}
{{- define "dw.redisUrl" -}}
{{- $r := .ctx.Values.redis }}
{{- $auth := ternary (printf "%s:$(REDIS_PASSWORD)@" $r.username) "" (and $r.auth .auth) }}
{{- if $r.sentinel.enabled }}
{{- $urls := list }}
{{- range $r.sentinel.hosts }}
{{- $urls = append $urls (printf "sentinel://%s%s/%d" $auth . (int $r.db)) }}
{{- end }}
{{- join ";" $urls }}
{{- else }}
{{- if $r.tls.enabled }}
{{- /* Verified against the mounted CA (or the system CAs): kombu and redis-py read it. */}}
{{- $query := "ssl_cert_reqs=required" }}
{{- if $r.tls.caSecret.name }}
{{- $query = printf "%s&ssl_ca_certs=%s" $query (include "dw.redisCaFile" .ctx) }}
{{- end }}
{{- printf "rediss://%s%s:%d/%d?%s" $auth $r.host (int $r.port) (int $r.db) $query }}
{{- else }}
{{- printf "redis://%s%s:%d/%d" $auth $r.host (int $r.port) (int $r.db) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Development secrets of services/core/config.py; the chart refuses them here already. */}}
{{- define "dw.devSecretsKey" -}}ZGV2ZWxvcG1lbnQtb25seS1rZXktZG8tbm90LXVzZSE={{- end }}
{{- define "dw.devJwtSecret" -}}development-only-jwt-secret-change-me{{- end }}

{{/* Fails the render on configurations the processes would refuse, or that lose work. */}}
{{- define "dw.checks" -}}
{{- $soft := float64 .Values.config.workerSoftShutdownTimeoutS }}
{{- range $key, $w := .Values.workers }}
{{- if le (float64 $w.terminationGracePeriodSeconds) $soft }}
{{- fail (printf "workers.%s.terminationGracePeriodSeconds (%v) must exceed config.workerSoftShutdownTimeoutS (%v): Kubernetes would kill running tasks before Celery restores them" $key $w.terminationGracePeriodSeconds $soft) }}
{{- end }}
{{- if gt (int $w.keda.minReplicaCount) (int $w.keda.maxReplicaCount) }}
{{- fail (printf "workers.%s.keda.minReplicaCount must not exceed maxReplicaCount" $key) }}
{{- end }}
{{- if and $.Values.keda.enabled (eq (int $w.keda.minReplicaCount) 0) (not $.Values.keda.outstanding.enabled) }}
{{- fail (printf "workers.%s.keda.minReplicaCount 0 needs keda.outstanding.enabled: the Redis list misses delayed retries and reserved messages, which would be stranded" $key) }}
{{- end }}
{{- end }}
{{- if le (float64 .Values.scheduler.terminationGracePeriodSeconds) $soft }}
{{- fail "scheduler.terminationGracePeriodSeconds must exceed config.workerSoftShutdownTimeoutS" }}
{{- end }}
{{- if and .Values.keda.enabled .Values.keda.outstanding.enabled (eq .Values.monitoring.scrape "none") }}
{{- fail "keda.outstanding.enabled needs monitoring.scrape (PodMonitor or ServiceMonitor): its query reads durable_queue_outstanding_tasks, which only a scrape of the scheduler produces; unscraped, the query is empty and KEDA holds every worker at its fallback. Turn scraping on, or keda.outstanding.enabled off" }}
{{- end }}
{{- $st := .Values.storage }}
{{- if and $st.existingClaim $st.persistence.create }}
{{- fail "storage.existingClaim and storage.persistence.create: choose one claim for the uploads" }}
{{- end }}
{{- if and (eq .Values.config.environment "production") (eq $st.backend "local") (not $st.existingClaim) (not $st.persistence.create) }}
{{- fail "production needs storage.existingClaim (a ReadWriteMany claim), storage.persistence.create or storage.backend s3: without a claim, uploads go to an emptyDir of each pod, which the http-worker and the other API replicas never see" }}
{{- end }}
{{- range .Values.api.ingress.paths }}
{{- $p := trimSuffix "/" . }}
{{- range list "/metrics" "/health/celery" }}
{{- if or (eq $p "") (eq $p .) (hasPrefix (printf "%s/" $p) .) }}
{{- fail (printf "api.ingress.paths: %q would make %s public: route /api/ (the default) or narrower paths; metrics and health stay inside the cluster" $p .) }}
{{- end }}
{{- end }}
{{- end }}
{{- $m := .Values.monitoring }}
{{- if and $m.alertmanagerConfig.enabled (not (and $m.alertmanagerConfig.critical $m.alertmanagerConfig.warning)) }}
{{- fail "monitoring.alertmanagerConfig.enabled needs monitoring.alertmanagerConfig.critical and monitoring.alertmanagerConfig.warning: the receivers (webhookConfigs, slackConfigs, pagerdutyConfigs, ...) the alerts go to" }}
{{- end }}
{{- if and $m.prometheusRule.enabled (not $m.prometheusRule.runbookBaseUrl) }}
{{- fail "monitoring.prometheusRule.enabled needs monitoring.prometheusRule.runbookBaseUrl: where docs/runbook.md is served, so that every alert's runbook_url opens" }}
{{- end }}
{{- if and .Values.helmTest.enabled .Values.config.authJwksUrl (not .Values.helmTest.tokenSecret.name) }}
{{- fail "with config.authJwksUrl the helm test pod cannot sign its token: set helmTest.tokenSecret (a Secret holding a bearer token of role service), or helmTest.enabled false" }}
{{- end }}
{{- $np := .Values.networkPolicy }}
{{- if and $np.enabled $np.ingressFrom (not $np.metricsFrom) (ne .Values.monitoring.scrape "none") }}
{{- fail "networkPolicy.ingressFrom would shut the scraper out of the API's /metrics (its HTTP port): name the scraper's pods or namespace in networkPolicy.metricsFrom" }}
{{- end }}
{{- if and .Values.redis.tls.enabled .Values.redis.sentinel.enabled }}
{{- fail "redis.tls with redis.sentinel is not supported: Celery's sentinel:// URLs carry no TLS; use the TLS endpoint of the managed Redis (redis.host)" }}
{{- end }}
{{- if and .Values.redis.sentinel.enabled (not .Values.redis.sentinel.hosts) }}
{{- fail "redis.sentinel.enabled needs redis.sentinel.hosts" }}
{{- end }}
{{- $s := .Values.secrets }}
{{- if $s.existingSecret }}
{{- range $k := list "databaseUrl" "redisPassword" "secretsKey" "authJwtSecret" "elasticsearchApiKey" "chatbotApiToken" "flowerBasicAuth" }}
{{- if index $s $k }}
{{- fail (printf "secrets.%s is set together with secrets.existingSecret: put it in the existing Secret" $k) }}
{{- end }}
{{- end }}
{{- if $s.extra }}
{{- fail "secrets.extra is set together with secrets.existingSecret: put it in the existing Secret" }}
{{- end }}
{{- else }}
{{- /* Every environment the schema allows (production, test) fails closed, as the settings do. */}}
{{- if not $s.databaseUrl }}{{ fail "production needs secrets.databaseUrl (or secrets.existingSecret)" }}{{ end }}
{{- if or (not $s.secretsKey) (contains (include "dw.devSecretsKey" .) $s.secretsKey) }}
{{- fail "production refuses an empty or development secrets.secretsKey: set private Fernet keys" }}
{{- end }}
{{- if and (not .Values.config.authJwksUrl) (or (not $s.authJwtSecret) (eq $s.authJwtSecret (include "dw.devJwtSecret" .))) }}
{{- fail "production refuses an empty or development secrets.authJwtSecret: set a private one or config.authJwksUrl" }}
{{- end }}
{{- if not $s.flowerBasicAuth }}{{ fail "production needs secrets.flowerBasicAuth (user:password)" }}{{ end }}
{{- if and .Values.redis.auth (not $s.redisPassword) }}{{ fail "redis.auth needs secrets.redisPassword" }}{{ end }}
{{- end }}
{{- if and .Values.config.authJwksUrl (not (and .Values.config.authIssuer .Values.config.authAudience)) }}
{{- fail "config.authJwksUrl needs config.authIssuer and config.authAudience" }}
{{- end }}
{{- end }}

{{/* The Secret's keys each component's pod gets, and the role it runs as (PROCESS_ROLE,
     services/core/config.py ROLE_SECRETS): `required` are the ones its role checks, the
     others are credentials it may use. No pod gets the whole Secret. */}}
{{- define "dw.podSecrets" -}}
api: {role: api, redis: true, required: [DATABASE_URL, SECRETS_KEY, AUTH_JWT_SECRET], optional: [ELASTICSEARCH_API_KEY, ELASTICSEARCH_PASSWORD, CHATBOT_API_TOKEN, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY]}
es-worker: {role: worker, redis: true, required: [DATABASE_URL, SECRETS_KEY], optional: [ELASTICSEARCH_API_KEY, ELASTICSEARCH_PASSWORD, EMBEDDINGS_API_KEY]}
http-worker: {role: worker, redis: true, required: [DATABASE_URL, SECRETS_KEY], optional: [CHATBOT_API_TOKEN, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY]}
scheduler: {role: worker, redis: true, required: [DATABASE_URL, SECRETS_KEY], optional: [S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY]}
flower: {role: flower, redis: true, required: [FLOWER_BASIC_AUTH], optional: []}
celery-exporter: {role: "", redis: true, required: [], optional: []}
migrate: {role: migrate, redis: false, required: [DATABASE_URL], optional: []}
test: {role: canary, redis: false, required: [AUTH_JWT_SECRET], optional: []}
{{- end }}

{{/* Environment from the ConfigMap (non-secret settings, the same for every pod). */}}
{{- define "dw.envFrom" -}}
- configMapRef:
    name: {{ .configMap | default (include "dw.fullname" .ctx) }}
{{- end }}

{{/* Per-pod environment: dict "ctx" . "component" "api" (and "secret": another Secret's
     name). A secret the role checks is required in production (a missing key stops the pod
     with its name); with JWKS there is no AUTH_JWT_SECRET to give. */}}
{{- define "dw.env" -}}
{{- $v := .ctx.Values }}
{{- $pod := index (include "dw.podSecrets" .ctx | fromYaml) .component }}
{{- $secret := .secret | default (include "dw.secretName" .ctx) }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- with $pod.role }}
- name: PROCESS_ROLE
  value: {{ . }}
{{- end }}
{{- range $pod.required }}
{{- if not (and (eq . "AUTH_JWT_SECRET") $v.config.authJwksUrl) }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
      optional: {{ ne $v.config.environment "production" }}
{{- end }}
{{- end }}
{{- range $pod.optional }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
      optional: true
{{- end }}
{{- if and $pod.redis $v.redis.auth }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: REDIS_PASSWORD
{{- end }}
- name: REDIS_URL
  value: {{ include "dw.redisUrl" (dict "ctx" .ctx "auth" $pod.redis) | quote }}
{{- end }}

{{/* Where the CA of redis.tls.caSecret is mounted. */}}
{{- define "dw.redisCaFile" -}}
/etc/durable-writes/redis-ca/ca.crt
{{- end }}

{{/* Writable paths of a read-only container: /tmp (heartbeat, Celery state) and the
     prometheus-client multiprocess directory; the Redis CA when one is given. */}}
{{- define "dw.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: metrics
  mountPath: /run/metrics
{{- if and .Values.redis.tls.enabled .Values.redis.tls.caSecret.name }}
- name: redis-ca
  mountPath: /etc/durable-writes/redis-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "dw.volumes" -}}
- name: tmp
  emptyDir: {}
- name: metrics
  emptyDir: {}
{{- with .Values.redis.tls }}
{{- if and .enabled .caSecret.name }}
- name: redis-ca
  secret:
    secretName: {{ .caSecret.name }}
    items:
      - {key: {{ .caSecret.key }}, path: ca.crt}
{{- end }}
{{- end }}
{{- end }}

{{- define "dw.storageMount" -}}
{{- if eq .Values.storage.backend "local" }}
- name: uploads
  mountPath: {{ .Values.storage.localDir }}
{{- end }}
{{- end }}

{{- define "dw.uploadsClaim" -}}
{{- .Values.storage.existingClaim | default (ternary (printf "%s-uploads" (include "dw.fullname" .)) "" .Values.storage.persistence.create) }}
{{- end }}

{{- define "dw.storageVolume" -}}
{{- if eq .Values.storage.backend "local" }}
- name: uploads
{{- with include "dw.uploadsClaim" . }}
  persistentVolumeClaim:
    claimName: {{ . }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level fields every pod shares: dict "ctx" . "component" "api" (and optionally
     "serviceAccount": a name other than the release's). The component's own affinity
     replaces the global one; each component is spread over nodes (and zones) on its own
     selector labels, so two components never count against each other. */}}
{{- define "dw.podCommon" -}}
{{- $v := .ctx.Values }}
serviceAccountName: {{ .serviceAccount | default (include "dw.serviceAccountName" .ctx) }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (.affinity | default $v.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if and $v.topologySpread.enabled .spread }}
topologySpreadConstraints:
  {{- range $v.topologySpread.topologyKeys }}
  - topologyKey: {{ . }}
    maxSkew: {{ $v.topologySpread.maxSkew }}
    whenUnsatisfiable: {{ $v.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "dw.selectorLabels" (dict "ctx" $.ctx "component" $.component) | nindent 8 }}
    {{- if eq $.spread "Deployment" }}
    # Old and new ReplicaSets of a rollout are counted apart.
    matchLabelKeys: [pod-template-hash]
    {{- end }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Pod template metadata: labels and the checksums that roll pods when config changes. */}}
{{- define "dw.podMeta" -}}
labels:
  {{- include "dw.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 2 }}
  {{- with .ctx.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  checksum/config: {{ include (print .ctx.Template.BasePath "/configmap.yaml") .ctx | sha256sum }}
  checksum/secret: {{ include (print .ctx.Template.BasePath "/secret.yaml") .ctx | sha256sum }}
  {{- with .ctx.Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

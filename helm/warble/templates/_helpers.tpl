{{/*
The eight workloads: values key -> facts the templates need. `callers` are the
values keys of the workloads allowed to connect (NetworkPolicy); the gateway
alone takes traffic from outside the release. `grpcService` is the service
name the readiness probe asks grpc.health.v1.Health about. `workerIds`: the
service issues Snowflake ids, so each pod's StatefulSet ordinal is its worker
id. `consumer`: the service consumes the event streams in a consumer group,
each pod under its own name. A StatefulSet without worker ids (notify-svc,
search-svc) is one for its per-pod data volume. `dataVolume`: the data volume
holds what the service needs whatever its store (search-svc's index), so it
is claimed whenever persistence is on, not only for an embedded store.
media-svc's volume is claimed when its files are on it (`blobs.backend` is
`filesystem`), see warble.workload.
*/}}
{{- define "warble.components" -}}
tweetSvc:
  name: tweet-svc
  port: 50051
  kind: StatefulSet
  workerIds: true
  grpcService: warble.tweet.v1.TweetService
  callers: [gateway, timelineSvc, fanoutSvc, searchSvc]
graphSvc:
  name: graph-svc
  port: 50052
  kind: StatefulSet
  workerIds: true
  grpcService: warble.graph.v1.GraphService
  callers: [gateway, timelineSvc, fanoutSvc, notifySvc, searchSvc]
timelineSvc:
  name: timeline-svc
  port: 50053
  kind: Deployment
  grpcService: warble.timeline.v1.TimelineService
  callers: [gateway]
fanoutSvc:
  name: fanout-svc
  port: 50054
  kind: Deployment
  consumer: true
  grpcService: warble.fanout.v1.FanoutService
  callers: []
notifySvc:
  name: notify-svc
  port: 50055
  kind: StatefulSet
  consumer: true
  grpcService: warble.notify.v1.NotifyService
  callers: [gateway]
searchSvc:
  name: search-svc
  port: 50056
  kind: StatefulSet
  dataVolume: true
  grpcService: warble.search.v1.SearchService
  callers: [gateway]
mediaSvc:
  name: media-svc
  port: 50057
  kind: StatefulSet
  workerIds: true
  consumer: true
  grpcService: warble.media.v1.MediaService
  callers: [gateway]
gateway:
  name: gateway
  port: 8080
  kind: Deployment
  http: true
  callers: []
{{- end -}}

{{/* The values keys of the workloads, in rendering order (a YAML list: `fromYamlArray`). */}}
{{- define "warble.componentKeys" -}}
[tweetSvc, graphSvc, timelineSvc, fanoutSvc, notifySvc, searchSvc, mediaSvc, gateway]
{{- end -}}

{{/* The facts of one component: (dict "root" $ "key" "tweetSvc"). */}}
{{- define "warble.component" -}}
{{- index (include "warble.components" .root | fromYaml) .key | toYaml -}}
{{- end -}}

{{- define "warble.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/*
Resource name prefix, at most 40 characters so `<prefix>-timeline-svc` and a
StatefulSet pod's `controller-revision-hash` label stay within 63.
*/}}
{{- define "warble.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of a component's resources: (dict "root" $ "key" "tweetSvc"). */}}
{{- define "warble.componentName" -}}
{{- $c := include "warble.component" . | fromYaml -}}
{{- printf "%s-%s" (include "warble.fullname" .root) $c.name -}}
{{- end -}}

{{- define "warble.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource: (dict "root" $ "component" "tweet-svc"). */}}
{{- define "warble.labels" -}}
helm.sh/chart: {{ include "warble.chart" .root }}
{{ include "warble.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: warble
{{- end -}}

{{/* Selector labels: (dict "root" $ "component" "tweet-svc"). */}}
{{- define "warble.selectorLabels" -}}
app.kubernetes.io/name: {{ include "warble.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "warble.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "warble.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image of a component: (dict "root" $ "key" "tweetSvc"). */}}
{{- define "warble.image" -}}
{{- $v := index .root.Values .key -}}
{{- $tag := $v.image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.image.registry) $v.image.repository $tag -}}
{{- end -}}

{{/* The most pods of a component that can run at once (bounds worker ids). */}}
{{- define "warble.maxPods" -}}
{{- if .autoscaling.enabled -}}{{ .autoscaling.maxReplicas | int }}{{- else -}}{{ .replicas | int }}{{- end -}}
{{- end -}}

{{/*
Checks the schema cannot express (it has no arithmetic). Included by every
workload template, so a bad combination stops the render with this message.
*/}}
{{- define "warble.validate" -}}
{{- $cache := .Values.cacheRedis -}}
{{- if and $cache.enabled (eq $cache.mode "single") (not $cache.url) -}}
{{- fail "cacheRedis.url: name the timeline cache's Redis (or turn cacheRedis.enabled off to share `redis`)" -}}
{{- end -}}
{{- if and $cache.enabled (eq $cache.mode "cluster") (not $cache.clusterNodes) -}}
{{- fail "cacheRedis.clusterNodes: name the cache cluster's seed nodes" -}}
{{- end -}}
{{- $mtls := .Values.meshTls -}}
{{- if and $mtls.certManager.enabled (not $mtls.enabled) -}}
{{- fail "meshTls.certManager.enabled requests certificates that nothing uses: set meshTls.enabled too" -}}
{{- end -}}
{{- if and $mtls.enabled $mtls.certManager.enabled (not $mtls.certManager.issuerRef.name) -}}
{{- fail "meshTls.certManager.issuerRef.name: name the cert-manager issuer (a CA issuer) that signs the mesh certificates" -}}
{{- end -}}
{{- $s := .Values.shutdown -}}
{{- if le (int $s.terminationGracePeriodSeconds) (add (int $s.preStopSleepSecs) (int $s.drainTimeoutSecs)) -}}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) must be greater than shutdown.preStopSleepSecs + shutdown.drainTimeoutSecs (%d + %d), or pods are killed while draining" (int $s.terminationGracePeriodSeconds) (int $s.preStopSleepSecs) (int $s.drainTimeoutSecs)) -}}
{{- end -}}
{{- range $key := include "warble.componentKeys" $ | fromYamlArray -}}
{{- $a := (index $.Values $key).autoscaling -}}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%d) must not exceed %s.autoscaling.maxReplicas (%d)" $key (int $a.minReplicas) $key (int $a.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- if hasKey .Values.gateway "metrics" -}}
{{- fail "gateway.metrics.serviceMonitor has moved to metrics.serviceMonitor, which scrapes every service (a ServiceMonitor per component): move enabled, interval, scrapeTimeout and labels there" -}}
{{- end -}}
{{- if lt (int64 .Values.consumer.maxRetryBackoffMs) (int64 .Values.consumer.retryBackoffMs) -}}
{{- fail "consumer.maxRetryBackoffMs must be at least consumer.retryBackoffMs" -}}
{{- end -}}
{{- $notifyConsumer := .Values.notifySvc.consumer -}}
{{- if lt (int64 $notifyConsumer.maxRetryBackoffMs) (int64 $notifyConsumer.retryBackoffMs) -}}
{{- fail "notifySvc.consumer.maxRetryBackoffMs must be at least notifySvc.consumer.retryBackoffMs" -}}
{{- end -}}
{{- if eq .Values.consumer.group $notifyConsumer.group -}}
{{- fail (printf "notifySvc.consumer.group and consumer.group (fanout-svc) are both %q: the two services would split the events between them and each miss the other's share; give each its own group" $notifyConsumer.group) -}}
{{- end -}}
{{- $mediaConsumer := .Values.mediaSvc.consumer -}}
{{- if lt (int64 $mediaConsumer.maxRetryBackoffMs) (int64 $mediaConsumer.retryBackoffMs) -}}
{{- fail "mediaSvc.consumer.maxRetryBackoffMs must be at least mediaSvc.consumer.retryBackoffMs" -}}
{{- end -}}
{{- range $other := list (dict "key" "consumer.group (fanout-svc)" "group" .Values.consumer.group) (dict "key" "notifySvc.consumer.group" "group" $notifyConsumer.group) -}}
{{- if eq $other.group $mediaConsumer.group -}}
{{- fail (printf "mediaSvc.consumer.group and %s are both %q: the two services would split the events between them and each miss the other's share; give each its own group" $other.key $mediaConsumer.group) -}}
{{- end -}}
{{- end -}}
{{- $media := .Values.mediaSvc -}}
{{- $s3 := $media.blobs.s3 -}}
{{- if and (eq $media.blobs.backend "s3") (not $s3.existingSecret) (ne (empty $s3.accessKeyId) (empty $s3.secretAccessKey)) -}}
{{- fail "mediaSvc.blobs.s3.accessKeyId and mediaSvc.blobs.s3.secretAccessKey: set both (or existingSecret), or neither to use the node's instance role" -}}
{{- end -}}
{{- $lifecycle := $media.lifecycle -}}
{{- if ge (int64 $lifecycle.claimTtlSecs) (int64 $lifecycle.unattachedTtlSecs) -}}
{{- fail (printf "mediaSvc.lifecycle.claimTtlSecs (%d) must be shorter than mediaSvc.lifecycle.unattachedTtlSecs (%d): a claim must lapse before its media can be swept as unattached" (int64 $lifecycle.claimTtlSecs) (int64 $lifecycle.unattachedTtlSecs)) -}}
{{- end -}}
{{- $index := .Values.searchSvc.index -}}
{{- if lt (int $index.writerHeapMb) (mul 15 (int $index.writerThreads)) -}}
{{- fail (printf "searchSvc.index.writerHeapMb (%d) must be at least 15 per writer thread (searchSvc.index.writerThreads is %d, so at least %d): tantivy refuses a smaller heap and search-svc would not start" (int $index.writerHeapMb) (int $index.writerThreads) (mul 15 (int $index.writerThreads))) -}}
{{- end -}}
{{- /* Snowflake worker id ranges: workerIdStart up to the most pods that can run at once. */ -}}
{{- $ranges := list -}}
{{- range $key := list "tweetSvc" "graphSvc" "mediaSvc" -}}
{{- $v := index $.Values $key -}}
{{- $name := (include "warble.component" (dict "root" $ "key" $key) | fromYaml).name -}}
{{- $start := int $v.workerIdStart -}}
{{- $end := sub (add $start (include "warble.maxPods" $v | int)) 1 -}}
{{- if gt $end 1023 -}}
{{- fail (printf "%s worker ids %d..%d pass 1023: lower %s.workerIdStart or its replica count" $name $start $end $key) -}}
{{- end -}}
{{- range $other := $ranges -}}
{{- if and (le $start $other.end) (le $other.start $end) -}}
{{- fail (printf "Snowflake worker ids overlap: %s uses %d..%d and %s %d..%d (workerIdStart + up to replicas or autoscaling.maxReplicas pods); move %s.workerIdStart or %s.workerIdStart apart" $other.name $other.start $other.end $name $start $end $other.key $key) -}}
{{- end -}}
{{- end -}}
{{- $ranges = append $ranges (dict "key" $key "name" $name "start" $start "end" $end) -}}
{{- end -}}
{{- end -}}

{{/* `redis.*` settings as env vars under `prefix` (WARBLE_REDIS__ or
WARBLE_EVENTS__REDIS__), from `redis` or the values given as `redis`. */}}
{{- define "warble.redisEnv" -}}
{{- $r := .redis | default .root.Values.redis -}}
{{ .prefix }}MODE: {{ $r.mode | quote }}
{{- if eq $r.mode "cluster" }}
{{ .prefix }}CLUSTER_NODES: {{ join "," $r.clusterNodes | quote }}
{{- else }}
{{ .prefix }}URL: {{ $r.url | quote }}
{{- end }}
{{ .prefix }}CONNECT_TIMEOUT_MS: {{ $r.connectTimeoutMs | int64 | quote }}
{{ .prefix }}RESPONSE_TIMEOUT_MS: {{ $r.responseTimeoutMs | int64 | quote }}
{{ .prefix }}DURABILITY_CHECK: {{ $r.durabilityCheck | default "off" | quote }}
{{- /* hasKey, not default: 0 (keep until acknowledged) is a setting. */}}
{{ .prefix }}STREAM_RETENTION_HOURS: {{ ternary $r.streamRetentionHours 168 (hasKey $r "streamRetentionHours") | int64 | quote }}
{{- end -}}

{{/* `scylla.*` settings as `store.scylla.*` env vars (tweet-svc and notify-svc). */}}
{{- define "warble.scyllaEnv" -}}
{{- $s := .Values.scylla -}}
WARBLE_STORE__SCYLLA__NODES: {{ join "," $s.nodes | quote }}
WARBLE_STORE__SCYLLA__KEYSPACE: {{ $s.keyspace | quote }}
WARBLE_STORE__SCYLLA__REPLICATION_FACTOR: {{ $s.replicationFactor | int64 | quote }}
WARBLE_STORE__SCYLLA__LOCAL_DATACENTER: {{ $s.localDatacenter | quote }}
WARBLE_STORE__SCYLLA__USERNAME: {{ $s.username | quote }}
WARBLE_STORE__SCYLLA__REQUEST_TIMEOUT_MS: {{ $s.requestTimeoutMs | int64 | quote }}
{{- end -}}

{{/*
Consumer settings (`consumer.*`, but `consumer.name`, which is each pod's
name) as env vars: the values `consumer` (fanout-svc) or `notifySvc.consumer`.
*/}}
{{- define "warble.consumerEnv" -}}
WARBLE_CONSUMER__GROUP: {{ .group | quote }}
WARBLE_CONSUMER__WORKERS: {{ .workers | int64 | quote }}
WARBLE_CONSUMER__READ_BATCH: {{ .readBatch | int64 | quote }}
WARBLE_CONSUMER__MAX_ATTEMPTS: {{ .maxAttempts | int64 | quote }}
WARBLE_CONSUMER__RETRY_BACKOFF_MS: {{ .retryBackoffMs | int64 | quote }}
WARBLE_CONSUMER__MAX_RETRY_BACKOFF_MS: {{ .maxRetryBackoffMs | int64 | quote }}
WARBLE_CONSUMER__PARTITIONS: {{ .partitions | int64 | quote }}
WARBLE_CONSUMER__LEASE_SECS: {{ .leaseSecs | int64 | quote }}
{{- end -}}

{{/* `telemetry.*` settings of a component: (dict "root" $ "key" "tweetSvc"). */}}
{{- define "warble.telemetryEnv" -}}
{{- $t := .root.Values.telemetry -}}
{{- $v := index .root.Values .key -}}
WARBLE_TELEMETRY__LOG_FORMAT: {{ $t.logFormat | quote }}
WARBLE_TELEMETRY__LOG_LEVEL: {{ $v.logLevel | default $t.logLevel | quote }}
WARBLE_TELEMETRY__OTLP_ENDPOINT: {{ $t.otlpEndpoint | quote }}
{{- end -}}

{{/*
The gateway's `limits.max_upload_bytes`: media-svc's largest file (image or
video) plus 1 MiB + 64 KiB for the multipart request's other parts, so that
media-svc, which knows the file's type, is the one that refuses a file too
large for its type (with the reason); with the default limits this is the
gateway's own default, 68222976. Never below the gateway's maxBodyBytes.
*/}}
{{- define "warble.maxUploadBytes" -}}
{{- $l := .Values.mediaSvc.limits -}}
{{- $largest := max (int64 $l.maxImageBytes) (int64 $l.maxVideoBytes) -}}
{{- max (add $largest 1114112) (int64 .Values.gateway.limits.maxBodyBytes) -}}
{{- end -}}

{{/*
The non-secret config of a component, as the env vars of its ConfigMap:
(dict "root" $ "key" "tweetSvc"). Every name must be a key the binary reads
(`<binary> --print-config-keys`); helm/tests checks it.
*/}}
{{- define "warble.configEnv" -}}
{{- $root := .root -}}
{{- $V := $root.Values -}}
{{- $c := include "warble.component" . | fromYaml -}}
{{- $v := index $V .key -}}
{{- $tweetAddr := printf "%s:50051" (include "warble.componentName" (dict "root" $root "key" "tweetSvc")) -}}
{{- $graphAddr := printf "%s:50052" (include "warble.componentName" (dict "root" $root "key" "graphSvc")) -}}
{{- $timelineAddr := printf "%s:50053" (include "warble.componentName" (dict "root" $root "key" "timelineSvc")) -}}
{{- $notifyAddr := printf "%s:50055" (include "warble.componentName" (dict "root" $root "key" "notifySvc")) -}}
{{- $searchAddr := printf "%s:50056" (include "warble.componentName" (dict "root" $root "key" "searchSvc")) -}}
{{- $mediaAddr := printf "%s:50057" (include "warble.componentName" (dict "root" $root "key" "mediaSvc")) -}}
{{- if eq .key "gateway" -}}
WARBLE_LISTEN_ADDR: "0.0.0.0:{{ $c.port }}"
WARBLE_DRAIN_TIMEOUT_SECS: {{ $V.shutdown.drainTimeoutSecs | int64 | quote }}
WARBLE_TWEET_SERVICE_ADDR: {{ $tweetAddr | quote }}
WARBLE_GRAPH_SERVICE_ADDR: {{ $graphAddr | quote }}
WARBLE_TIMELINE_SERVICE_ADDR: {{ $timelineAddr | quote }}
WARBLE_NOTIFY_SERVICE_ADDR: {{ $notifyAddr | quote }}
WARBLE_SEARCH_SERVICE_ADDR: {{ $searchAddr | quote }}
WARBLE_MEDIA_SERVICE_ADDR: {{ $mediaAddr | quote }}
WARBLE_REQUEST_TIMEOUT_MS: {{ $v.requestTimeoutMs | int64 | quote }}
WARBLE_GRAPHIQL: {{ $v.graphiql | quote }}
WARBLE_INTROSPECTION: {{ $v.introspection | quote }}
WARBLE_CORS_ALLOWED_ORIGINS: {{ join "," $v.corsAllowedOrigins | quote }}
WARBLE_PERSISTED_QUERIES: {{ $v.persistedQueries | quote }}
WARBLE_TRUSTED_PROXIES: {{ join "," $v.trustedProxies | quote }}
WARBLE_TRUSTED_DOCUMENTS_FILE: {{ ternary "/etc/warble/trusted-documents/manifest.json" "" (ne $v.trustedDocuments.configMap "") | quote }}
WARBLE_AUTH__ALGORITHM: {{ $v.auth.algorithm | quote }}
{{- if $v.auth.publicKeyPem }}
WARBLE_AUTH__PUBLIC_KEY_PEM: {{ $v.auth.publicKeyPem | quote }}
{{- end }}
WARBLE_AUTH__JWKS_URL: {{ $v.auth.jwksUrl | quote }}
WARBLE_AUTH__JWKS_MIN_REFRESH_SECS: {{ $v.auth.jwksMinRefreshSecs | int64 | quote }}
WARBLE_AUTH__ISSUER: {{ $v.auth.issuer | quote }}
WARBLE_AUTH__SUBJECTS: {{ ternary "user_id" $v.auth.subjects $v.auth.devMode | quote }}
WARBLE_AUTH__IDENTITY_CACHE_ENTRIES: {{ $v.auth.identityCacheEntries | int64 | quote }}
WARBLE_AUTH__IDENTITY_CACHE_TTL_SECS: {{ $v.auth.identityCacheTtlSecs | int64 | quote }}
WARBLE_AUTH__AUDIENCE: {{ $v.auth.audience | quote }}
WARBLE_AUTH__DEV_MODE: {{ $v.auth.devMode | quote }}
WARBLE_AUTH__DEV_TOKEN_TTL_SECS: {{ $v.auth.devTokenTtlSecs | int64 | quote }}
WARBLE_LIMITS__MAX_DEPTH: {{ $v.limits.maxDepth | int64 | quote }}
WARBLE_LIMITS__MAX_COMPLEXITY: {{ $v.limits.maxComplexity | int64 | quote }}
WARBLE_LIMITS__MAX_BODY_BYTES: {{ $v.limits.maxBodyBytes | int64 | quote }}
WARBLE_LIMITS__MAX_UPLOAD_BYTES: {{ include "warble.maxUploadBytes" $root | quote }}
WARBLE_LIMITS__MUTATION_BURST: {{ $v.limits.mutationBurst | int64 | quote }}
WARBLE_LIMITS__MUTATIONS_PER_MINUTE: {{ $v.limits.mutationsPerMinute | int64 | quote }}
WARBLE_LIMITS__QUERY_BURST: {{ $v.limits.queryBurst | int64 | quote }}
WARBLE_LIMITS__QUERIES_PER_MINUTE: {{ $v.limits.queriesPerMinute | int64 | quote }}
WARBLE_LIMITS__WS_INIT_TIMEOUT_SECS: {{ $v.limits.wsInitTimeoutSecs | int64 | quote }}
WARBLE_LIMITS__WS_OPERATIONS_PER_CONNECTION: {{ $v.limits.wsOperationsPerConnection | int64 | quote }}
WARBLE_LIMITS__WS_CONNECTIONS_PER_USER: {{ $v.limits.wsConnectionsPerUser | int64 | quote }}
WARBLE_LIMITS__MAX_IN_FLIGHT_REQUESTS: {{ $v.limits.maxInFlightRequests | int64 | quote }}
WARBLE_LIMITS__ADAPTIVE_IN_FLIGHT: {{ $v.limits.adaptiveInFlight | quote }}
WARBLE_EVENTS__BACKEND: "redis"
{{ include "warble.redisEnv" (dict "root" $root "prefix" "WARBLE_EVENTS__REDIS__") }}
{{- else }}
WARBLE_SERVER__LISTEN_ADDR: "0.0.0.0:{{ $c.port }}"
WARBLE_SERVER__DRAIN_TIMEOUT_SECS: {{ $V.shutdown.drainTimeoutSecs | int64 | quote }}
WARBLE_SERVER__REFLECTION: {{ $V.grpcReflection | quote }}
WARBLE_SERVER__METRICS_LISTEN_ADDR: "0.0.0.0:{{ include "warble.metricsPort" $root }}"
{{- end }}
{{- if $V.meshTls.enabled }}
{{- $tlsPrefix := ternary "WARBLE_MESH_TLS__" "WARBLE_SERVER__TLS__" (eq .key "gateway") }}
{{ $tlsPrefix }}ENABLED: "true"
{{ $tlsPrefix }}CERT_FILE: "/etc/warble/mesh-tls/tls.crt"
{{ $tlsPrefix }}KEY_FILE: "/etc/warble/mesh-tls/tls.key"
{{ $tlsPrefix }}CA_FILE: "/etc/warble/mesh-tls/ca.crt"
{{- with index $V.meshTls.allowPeers .key }}
WARBLE_SERVER__ALLOW_PEERS: {{ . | quote }}
{{- end }}
{{- if ne .key "gateway" }}
WARBLE_SERVER__HEALTH_LISTEN_ADDR: "0.0.0.0:{{ include "warble.healthPort" $root }}"
{{- end }}
{{- end }}
{{- if eq .key "tweetSvc" }}
WARBLE_DATA_DIR: "/var/lib/warble"
WARBLE_IDEMPOTENCY_TTL_SECS: {{ $v.idempotencyTtlSecs | int64 | quote }}
WARBLE_STORE__BACKEND: {{ $v.store.backend | quote }}
{{- if eq $v.store.backend "scylla" }}
{{ include "warble.scyllaEnv" $root }}
{{- end }}
WARBLE_EVENTS__BACKEND: "redis"
{{ include "warble.redisEnv" (dict "root" $root "prefix" "WARBLE_EVENTS__REDIS__") }}
{{- end }}
{{- if eq .key "graphSvc" }}
WARBLE_DATA_DIR: "/var/lib/warble"
WARBLE_STORE__BACKEND: {{ $v.store.backend | quote }}
{{- if eq $v.store.backend "neo4j" }}
{{- $n := $V.neo4j }}
WARBLE_STORE__NEO4J__URI: {{ $n.uri | quote }}
WARBLE_STORE__NEO4J__USER: {{ $n.user | quote }}
WARBLE_STORE__NEO4J__DATABASE: {{ $n.database | quote }}
WARBLE_STORE__NEO4J__MAX_CONNECTIONS: {{ $n.maxConnections | int64 | quote }}
{{- end }}
WARBLE_EVENTS__BACKEND: "redis"
{{ include "warble.redisEnv" (dict "root" $root "prefix" "WARBLE_EVENTS__REDIS__") }}
{{- end }}
{{- if or (eq .key "timelineSvc") (eq .key "fanoutSvc") }}
WARBLE_TWEET_SERVICE_ADDR: {{ $tweetAddr | quote }}
WARBLE_GRAPH_SERVICE_ADDR: {{ $graphAddr | quote }}
WARBLE_REQUEST_TIMEOUT_MS: {{ $v.requestTimeoutMs | int64 | quote }}
WARBLE_BACKEND: "redis"
{{- if and (eq .key "timelineSvc") $V.cacheRedis.enabled }}
{{ include "warble.redisEnv" (dict "root" $root "prefix" "WARBLE_REDIS__" "redis" $V.cacheRedis) }}
{{- else }}
{{ include "warble.redisEnv" (dict "root" $root "prefix" "WARBLE_REDIS__") }}
{{- end }}
{{- if and (eq .key "fanoutSvc") $V.cacheRedis.enabled }}
WARBLE_TIMELINE_CACHE__SEPARATE: "true"
{{ include "warble.redisEnv" (dict "root" $root "prefix" "WARBLE_TIMELINE_CACHE__REDIS__" "redis" $V.cacheRedis) }}
{{- end }}
{{- end }}
{{- if eq .key "timelineSvc" }}
WARBLE_CELEBRITY_THRESHOLD: {{ $V.fanout.celebrityThreshold | int64 | quote }}
WARBLE_INACTIVE_AFTER_DAYS: {{ $V.fanout.inactiveAfterDays | int64 | quote }}
{{- end }}
{{- if eq .key "fanoutSvc" }}
{{- $f := $V.fanout }}
{{- $k := $V.consumer }}
WARBLE_FANOUT__CELEBRITY_THRESHOLD: {{ $f.celebrityThreshold | int64 | quote }}
WARBLE_FANOUT__INACTIVE_AFTER_DAYS: {{ $f.inactiveAfterDays | int64 | quote }}
WARBLE_FANOUT__FOLLOW_BACKFILL_TWEETS: {{ $f.followBackfillTweets | int64 | quote }}
WARBLE_FANOUT__FOLLOWER_PAGE_SIZE: {{ $f.followerPageSize | int64 | quote }}
{{ include "warble.consumerEnv" $k }}
{{- end }}
{{- if eq .key "notifySvc" }}
WARBLE_DATA_DIR: "/var/lib/warble"
WARBLE_STORE__BACKEND: {{ $v.store.backend | quote }}
{{- if eq $v.store.backend "scylla" }}
{{ include "warble.scyllaEnv" $root }}
{{- end }}
WARBLE_GRAPH_SERVICE_ADDR: {{ $graphAddr | quote }}
WARBLE_REQUEST_TIMEOUT_MS: {{ $v.requestTimeoutMs | int64 | quote }}
{{ include "warble.redisEnv" (dict "root" $root "prefix" "WARBLE_REDIS__") }}
{{ include "warble.consumerEnv" $v.consumer }}
{{- end }}
{{- if eq .key "searchSvc" }}
{{- /*
No WARBLE_INDEX__REPLICA: left empty, the service names its replica (its pin
in the event stream) after HOSTNAME, which Kubernetes sets to the pod's name:
stable per StatefulSet ordinal, so a restarted pod resumes its own pin. The
pod spec sets neither hostname nor setHostnameAsFQDN nor hostNetwork, any of
which would change HOSTNAME.
*/}}
{{- $i := $v.index }}
{{- $t := $v.trends }}
WARBLE_DATA_DIR: "/var/lib/warble"
WARBLE_TWEET_SERVICE_ADDR: {{ $tweetAddr | quote }}
WARBLE_GRAPH_SERVICE_ADDR: {{ $graphAddr | quote }}
WARBLE_REQUEST_TIMEOUT_MS: {{ $v.requestTimeoutMs | int64 | quote }}
{{ include "warble.redisEnv" (dict "root" $root "prefix" "WARBLE_REDIS__") }}
WARBLE_INDEX__WRITER_HEAP_MB: {{ $i.writerHeapMb | int64 | quote }}
WARBLE_INDEX__WRITER_THREADS: {{ $i.writerThreads | int64 | quote }}
WARBLE_INDEX__BATCH_EVENTS: {{ $i.batchEvents | int64 | quote }}
{{- /* Trend counts shared by every replica: the embedded store is one pod's. */}}
WARBLE_TRENDS__BACKEND: "redis"
WARBLE_TRENDS__KEY_PREFIX: {{ $t.keyPrefix | quote }}
WARBLE_TRENDS__CACHE_MS: {{ $t.cacheMs | int64 | quote }}
WARBLE_RETENTION__REPLICA_TIMEOUT_SECS: {{ $v.retention.replicaTimeoutSecs | int64 | quote }}
WARBLE_RETENTION__REGISTRY_KEY: {{ $v.retention.registryKey | quote }}
{{- end }}
{{- if eq .key "mediaSvc" }}
{{- $b := $v.blobs }}
{{- $u := $v.urls }}
{{- $l := $v.limits }}
{{- $lc := $v.lifecycle }}
WARBLE_DATA_DIR: "/var/lib/warble"
WARBLE_BLOBS__BACKEND: {{ $b.backend | quote }}
{{- if eq $b.backend "s3" }}
{{- $s3 := $b.s3 }}
WARBLE_BLOBS__S3__ENDPOINT: {{ $s3.endpoint | quote }}
WARBLE_BLOBS__S3__REGION: {{ $s3.region | quote }}
WARBLE_BLOBS__S3__BUCKET: {{ $s3.bucket | quote }}
WARBLE_BLOBS__S3__PREFIX: {{ $s3.prefix | quote }}
WARBLE_BLOBS__S3__ALLOW_HTTP: {{ $s3.allowHttp | quote }}
WARBLE_BLOBS__S3__VIRTUAL_HOSTED_STYLE: {{ $s3.virtualHostedStyle | quote }}
{{- end }}
{{- /* Metadata shared by every replica: the embedded store is one pod's. */}}
WARBLE_STORE__BACKEND: "redis"
WARBLE_STORE__KEY_PREFIX: {{ $v.store.keyPrefix | quote }}
{{ include "warble.redisEnv" (dict "root" $root "prefix" "WARBLE_STORE__REDIS__") }}
WARBLE_URLS__MODE: {{ $u.mode | quote }}
{{- if eq $u.mode "base" }}
WARBLE_URLS__BASE_URL: {{ $u.baseUrl | quote }}
{{- else }}
WARBLE_URLS__PRESIGN_TTL_SECS: {{ $u.presignTtlSecs | int64 | quote }}
{{- end }}
WARBLE_LIMITS__MAX_IMAGE_BYTES: {{ $l.maxImageBytes | int64 | quote }}
WARBLE_LIMITS__MAX_VIDEO_BYTES: {{ $l.maxVideoBytes | int64 | quote }}
WARBLE_LIMITS__MAX_IMAGE_PIXELS: {{ $l.maxImagePixels | int64 | quote }}
WARBLE_LIFECYCLE__UNATTACHED_TTL_SECS: {{ $lc.unattachedTtlSecs | int64 | quote }}
WARBLE_LIFECYCLE__DELETED_GRACE_SECS: {{ $lc.deletedGraceSecs | int64 | quote }}
WARBLE_LIFECYCLE__CLAIM_TTL_SECS: {{ $lc.claimTtlSecs | int64 | quote }}
WARBLE_LIFECYCLE__SWEEP_INTERVAL_MS: {{ $lc.sweepIntervalMs | int64 | quote }}
WARBLE_LIFECYCLE__SWEEP_BATCH: {{ $lc.sweepBatch | int64 | quote }}
{{ include "warble.redisEnv" (dict "root" $root "prefix" "WARBLE_REDIS__") }}
{{ include "warble.consumerEnv" $v.consumer }}
{{- end }}
{{ include "warble.telemetryEnv" . }}
{{- end -}}

{{/*
Where one credential comes from, as `name:`/`key:` of a secretKeyRef, or
nothing when it is not set: (dict "root" $ "cred" <values with password,
existingSecret, existingSecretKey> "chartKey" "redis-password").
*/}}
{{- define "warble.secretRef" -}}
{{- if .cred.existingSecret -}}
name: {{ .cred.existingSecret }}
key: {{ .cred.existingSecretKey }}
{{- else if .cred.password -}}
name: {{ include "warble.fullname" .root }}
key: {{ .chartKey }}
{{- end -}}
{{- end -}}

{{/* Whether the gateway gets an HS256 secret (needed for HS256 tokens and dev mode). */}}
{{- define "warble.gatewayNeedsHs256" -}}
{{- $a := .Values.gateway.auth -}}
{{- if or (eq $a.algorithm "HS256") $a.devMode $a.hs256Secret $a.existingSecret -}}true{{- end -}}
{{- end -}}

{{/*
The secret env vars of a component (env entries with secretKeyRef):
(dict "root" $ "key" "tweetSvc"). Secrets never go into a ConfigMap.
*/}}
{{- define "warble.secretEnv" -}}
{{- $root := .root -}}
{{- $V := $root.Values -}}
{{- $v := index $V .key -}}
{{- $refs := dict -}}
{{- if or (eq .key "tweetSvc") (eq .key "graphSvc") (eq .key "gateway") -}}
{{- $_ := set $refs "WARBLE_EVENTS__REDIS__PASSWORD" (include "warble.secretRef" (dict "root" $root "cred" $V.redis "chartKey" "redis-password")) -}}
{{- end -}}
{{- if has .key (list "fanoutSvc" "notifySvc" "searchSvc" "mediaSvc") -}}
{{- $_ := set $refs "WARBLE_REDIS__PASSWORD" (include "warble.secretRef" (dict "root" $root "cred" $V.redis "chartKey" "redis-password")) -}}
{{- end -}}
{{- if eq .key "timelineSvc" -}}
{{- $cacheCred := ternary $V.cacheRedis $V.redis $V.cacheRedis.enabled -}}
{{- $_ := set $refs "WARBLE_REDIS__PASSWORD" (include "warble.secretRef" (dict "root" $root "cred" $cacheCred "chartKey" "redis-password")) -}}
{{- end -}}
{{- if and (eq .key "fanoutSvc") $V.cacheRedis.enabled -}}
{{- $_ := set $refs "WARBLE_TIMELINE_CACHE__REDIS__PASSWORD" (include "warble.secretRef" (dict "root" $root "cred" $V.cacheRedis "chartKey" "redis-password")) -}}
{{- end -}}
{{- if eq .key "mediaSvc" -}}
{{- $_ := set $refs "WARBLE_STORE__REDIS__PASSWORD" (include "warble.secretRef" (dict "root" $root "cred" $V.redis "chartKey" "redis-password")) -}}
{{- if eq $v.blobs.backend "s3" -}}
{{- $s3 := $v.blobs.s3 -}}
{{- $keyId := dict "existingSecret" $s3.existingSecret "existingSecretKey" $s3.existingSecretAccessKeyIdKey "password" $s3.accessKeyId -}}
{{- $secretKey := dict "existingSecret" $s3.existingSecret "existingSecretKey" $s3.existingSecretSecretAccessKeyKey "password" $s3.secretAccessKey -}}
{{- $_ := set $refs "WARBLE_BLOBS__S3__ACCESS_KEY_ID" (include "warble.secretRef" (dict "root" $root "cred" $keyId "chartKey" "media-s3-access-key-id")) -}}
{{- $_ := set $refs "WARBLE_BLOBS__S3__SECRET_ACCESS_KEY" (include "warble.secretRef" (dict "root" $root "cred" $secretKey "chartKey" "media-s3-secret-access-key")) -}}
{{- end -}}
{{- end -}}
{{- if and (or (eq .key "tweetSvc") (eq .key "notifySvc")) (eq $v.store.backend "scylla") -}}
{{- $_ := set $refs "WARBLE_STORE__SCYLLA__PASSWORD" (include "warble.secretRef" (dict "root" $root "cred" $V.scylla "chartKey" "scylla-password")) -}}
{{- end -}}
{{- if and (eq .key "graphSvc") (eq $v.store.backend "neo4j") -}}
{{- $_ := set $refs "WARBLE_STORE__NEO4J__PASSWORD" (include "warble.secretRef" (dict "root" $root "cred" $V.neo4j "chartKey" "neo4j-password")) -}}
{{- end -}}
{{- if and (eq .key "gateway") (include "warble.gatewayNeedsHs256" $root) -}}
{{- $a := $V.gateway.auth -}}
{{- $cred := dict "existingSecret" $a.existingSecret "existingSecretKey" $a.existingSecretKey "password" "chart" -}}
{{- $_ := set $refs "WARBLE_AUTH__HS256_SECRET" (include "warble.secretRef" (dict "root" $root "cred" $cred "chartKey" "gateway-hs256-secret")) -}}
{{- end -}}
{{- range $env, $ref := $refs }}
{{- if $ref }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      {{- $ref | nindent 6 }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
What rolls a component's pods when it changes: its ConfigMap data and the
secret values given in values (not a generated HS256 secret, which stays the
same across upgrades).
*/}}
{{- define "warble.configChecksum" -}}
{{- $V := .root.Values -}}
{{- $s3 := $V.mediaSvc.blobs.s3 -}}
{{- $inputs := list (include "warble.configEnv" .) (include "warble.secretEnv" .) $V.redis.password $V.scylla.password $V.neo4j.password $V.gateway.auth.hs256Secret $s3.accessKeyId $s3.secretAccessKey -}}
{{- $inputs | toJson | sha256sum -}}
{{- end -}}

{{/* The plaintext health port of the gRPC services under mutual TLS. */}}
{{- define "warble.healthPort" -}}
9095
{{- end -}}

{{/*
The plaintext HTTP port on which every gRPC service serves Prometheus text at
/metrics (`server.metrics_listen_addr`): a port of its own, because the gRPC
port speaks HTTP/2 only (and mutual TLS when meshTls is on), which scrapers
cannot. The gateway serves /metrics on its HTTP port instead.
*/}}
{{- define "warble.metricsPort" -}}
9464
{{- end -}}

{{/* The Secret holding a component's mesh certificate: (dict "root" $ "key" "tweetSvc"). */}}
{{- define "warble.meshTlsSecret" -}}
{{- index .root.Values.meshTls.secretNames .key | default (printf "%s-mesh-tls" (include "warble.componentName" .)) -}}
{{- end -}}

{{/* Probe timing: (dict "root" $ "probe" "readiness"). */}}
{{- define "warble.probeTiming" -}}
{{- $p := index .root.Values.probes .probe -}}
periodSeconds: {{ $p.periodSeconds }}
failureThreshold: {{ $p.failureThreshold }}
timeoutSeconds: {{ $p.timeoutSeconds }}
{{- end -}}

{{/* Topology spread constraints of a component's pods. */}}
{{- define "warble.topologySpread" -}}
{{- $t := .root.Values.topologySpread -}}
{{- $c := include "warble.component" . | fromYaml -}}
{{- $revisionLabel := ternary "controller-revision-hash" "pod-template-hash" (eq $c.kind "StatefulSet") -}}
{{- range $topology := list (dict "key" "topology.kubernetes.io/zone" "when" $t.zoneWhenUnsatisfiable) (dict "key" "kubernetes.io/hostname" "when" $t.hostWhenUnsatisfiable) }}
- maxSkew: {{ $t.maxSkew }}
  topologyKey: {{ $topology.key }}
  whenUnsatisfiable: {{ $topology.when }}
  labelSelector:
    matchLabels:
      {{- include "warble.selectorLabels" (dict "root" $.root "component" $c.name) | nindent 6 }}
  matchLabelKeys:
    - {{ $revisionLabel }}
{{- end }}
{{- end -}}

{{/*
A component's workload: Deployment, or StatefulSet for the services that
issue Snowflake ids (each pod's ordinal is its worker id) or keep data on a
volume of their own per pod. Then its Service (and a StatefulSet's headless
governing Service). (dict "root" $ "key" "tweetSvc").
*/}}
{{- define "warble.workload" -}}
{{- $root := .root -}}
{{- $V := $root.Values -}}
{{- $c := include "warble.component" . | fromYaml -}}
{{- $v := index $V .key -}}
{{- $name := include "warble.componentName" . -}}
{{- $sts := eq $c.kind "StatefulSet" -}}
{{- $ids := hasKey $c "workerIds" -}}
{{- $embedded := and $sts (eq (dig "store" "backend" "" $v) "embedded") -}}
{{- /* media-svc keeps its files in data_dir in filesystem mode. */ -}}
{{- $fileBlobs := and $sts (eq (dig "blobs" "backend" "" $v) "filesystem") -}}
{{- $pvc := and (or $embedded $fileBlobs (hasKey $c "dataVolume")) $v.persistence.enabled -}}
{{- $portName := ternary "http" "grpc" (hasKey $c "http") -}}
{{- include "warble.validate" $root -}}
apiVersion: apps/v1
kind: {{ $c.kind }}
metadata:
  name: {{ $name }}
  labels:
    {{- include "warble.labels" (dict "root" $root "component" $c.name) | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "warble.selectorLabels" (dict "root" $root "component" $c.name) | nindent 6 }}
  {{- if $sts }}
  serviceName: {{ $name }}-headless
  # Pods start and stop in parallel: no pod waits for another.
  podManagementPolicy: Parallel
  {{- if $ids }}
  # Pod N is `<name>-N` and carries the label apps.kubernetes.io/pod-index=N,
  # which becomes WARBLE_WORKER_ID: worker ids workerIdStart, workerIdStart+1, ...
  # A StatefulSet never runs two pods with the same ordinal at once (a
  # replacement starts only after its predecessor is gone), so no two live
  # processes share a worker id.
  ordinals:
    start: {{ $v.workerIdStart }}
  {{- else }}
  # A StatefulSet never runs two pods with the same ordinal at once (a
  # replacement starts only after its predecessor is gone), so no two
  # processes ever open the same data volume.
  {{- end }}
  updateStrategy:
    type: RollingUpdate
  {{- else }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  {{- end }}
  template:
    metadata:
      labels:
        {{- include "warble.labels" (dict "root" $root "component" $c.name) | nindent 8 }}
        {{- with $V.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "warble.configChecksum" . }}
        {{- with (merge (dict) $v.podAnnotations $V.podAnnotations) }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "warble.serviceAccountName" $root }}
      # No Warble service calls the Kubernetes API.
      automountServiceAccountToken: false
      # Service links would inject WARBLE_<SERVICE>_PORT-style variables that
      # the services would read as (unknown) config keys.
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $V.shutdown.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml $V.podSecurityContext | nindent 8 }}
      {{- with $V.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $V.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- if $V.topologySpread.enabled }}
      topologySpreadConstraints:
        {{- include "warble.topologySpread" . | trim | nindent 8 }}
      {{- end }}
      {{- with $V.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $V.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $V.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $c.name }}
          image: {{ include "warble.image" . | quote }}
          imagePullPolicy: {{ $V.image.pullPolicy }}
          ports:
            - name: {{ $portName }}
              containerPort: {{ $c.port }}
              protocol: TCP
            {{- if and $V.meshTls.enabled (not (hasKey $c "http")) }}
            # Plaintext grpc.health.v1.Health only, for the probes.
            - name: health
              containerPort: {{ include "warble.healthPort" $root }}
              protocol: TCP
            {{- end }}
            {{- if not (hasKey $c "http") }}
            # Plaintext HTTP GET /metrics only, for Prometheus.
            - name: metrics
              containerPort: {{ include "warble.metricsPort" $root }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ $name }}
          {{- $secretEnv := include "warble.secretEnv" . }}
          {{- if or $secretEnv $ids (hasKey $c "consumer") $v.extraEnv }}
          env:
            {{- if $ids }}
            - name: WARBLE_WORKER_ID
              valueFrom:
                fieldRef:
                  fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
            {{- end }}
            {{- if hasKey $c "consumer" }}
            # Each pod consumes under its own name in the shared group.
            - name: WARBLE_CONSUMER__NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            {{- end }}
            {{- with $secretEnv }}
            {{- . | trim | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- end }}
          {{- if hasKey $c "http" }}
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            {{- include "warble.probeTiming" (dict "root" $root "probe" "startup") | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            {{- include "warble.probeTiming" (dict "root" $root "probe" "readiness") | nindent 12 }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            {{- include "warble.probeTiming" (dict "root" $root "probe" "liveness") | nindent 12 }}
          {{- else }}
          {{- /* Kubernetes' gRPC probes speak plaintext, which a mutual-TLS
          server refuses: with mTLS on they ask the plaintext health listener. */}}
          {{- $probePort := ternary (include "warble.healthPort" $root | int) $c.port $V.meshTls.enabled }}
          startupProbe:
            grpc:
              port: {{ $probePort }}
              service: ""
            {{- include "warble.probeTiming" (dict "root" $root "probe" "startup") | nindent 12 }}
          readinessProbe:
            grpc:
              port: {{ $probePort }}
              service: {{ $c.grpcService }}
            {{- include "warble.probeTiming" (dict "root" $root "probe" "readiness") | nindent 12 }}
          livenessProbe:
            grpc:
              port: {{ $probePort }}
              service: ""
            {{- include "warble.probeTiming" (dict "root" $root "probe" "liveness") | nindent 12 }}
          {{- end }}
          {{- if gt (int $V.shutdown.preStopSleepSecs) 0 }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $V.shutdown.preStopSleepSecs }}
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $V.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if and (eq .key "gateway") $v.trustedDocuments.configMap }}
            - name: trusted-documents
              mountPath: /etc/warble/trusted-documents
              readOnly: true
            {{- end }}
            {{- if $sts }}
            - name: data
              mountPath: /var/lib/warble
            {{- end }}
            {{- if $V.meshTls.enabled }}
            - name: mesh-tls
              mountPath: /etc/warble/mesh-tls
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $V.tmpSizeLimit }}
        {{- if $V.meshTls.enabled }}
        # This component's mesh certificate, key and the mesh CA.
        - name: mesh-tls
          secret:
            secretName: {{ include "warble.meshTlsSecret" . }}
            defaultMode: 0440
        {{- end }}
        {{- if and (eq .key "gateway") $v.trustedDocuments.configMap }}
        # The trusted-documents manifest, from a ConfigMap the release does not own
        # (your frontend's build produces it).
        - name: trusted-documents
          configMap:
            name: {{ $v.trustedDocuments.configMap }}
            items:
              - key: {{ $v.trustedDocuments.key }}
                path: manifest.json
        {{- end }}
        {{- if and $sts (not $pvc) }}
        {{- if hasKey $c "dataVolume" }}
        # `data_dir` without persistence: the index is rebuilt from the event
        # stream (a full backfill) whenever the pod starts.
        {{- else if eq .key "mediaSvc" }}
        # `data_dir`: nothing is kept here in S3 mode (files in the bucket,
        # metadata in Redis).
        {{- else }}
        # `data_dir`: the production stores keep nothing here; an embedded store
        # without persistence loses its data with the pod.
        {{- end }}
        - name: data
          emptyDir: {}
        {{- end }}
  {{- if $pvc }}
  volumeClaimTemplates:
    - metadata:
        name: data
        labels:
          {{- include "warble.selectorLabels" (dict "root" $root "component" $c.name) | nindent 10 }}
      spec:
        accessModes:
          - ReadWriteOnce
        {{- with $v.persistence.storageClassName }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ $v.persistence.size }}
  {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "warble.labels" (dict "root" $root "component" $c.name) | nindent 4 }}
  {{- if hasKey $c "http" }}
  {{- with $v.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
spec:
  {{- if hasKey $c "http" }}
  type: {{ $v.service.type }}
  {{- else }}
  type: ClusterIP
  {{- end }}
  selector:
    {{- include "warble.selectorLabels" (dict "root" $root "component" $c.name) | nindent 4 }}
  ports:
    - name: {{ $portName }}
      port: {{ if hasKey $c "http" }}{{ $v.service.port }}{{ else }}{{ $c.port }}{{ end }}
      targetPort: {{ $portName }}
      protocol: TCP
      {{- if hasKey $c "http" }}
      appProtocol: http
      {{- else if not $V.meshTls.enabled }}
      appProtocol: kubernetes.io/h2c
      {{- end }}
    {{- if not (hasKey $c "http") }}
    - name: metrics
      port: {{ include "warble.metricsPort" $root }}
      targetPort: metrics
      protocol: TCP
      appProtocol: http
    {{- end }}
{{- if $sts }}
---
# Governing Service of the StatefulSet (stable per-pod DNS names). It has no
# `metrics` port, so a ServiceMonitor selecting it too finds nothing to scrape
# there and each pod is scraped once, through the Service above.
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}-headless
  labels:
    {{- include "warble.labels" (dict "root" $root "component" $c.name) | nindent 4 }}
spec:
  clusterIP: None
  selector:
    {{- include "warble.selectorLabels" (dict "root" $root "component" $c.name) | nindent 4 }}
  ports:
    - name: {{ $portName }}
      port: {{ $c.port }}
      targetPort: {{ $portName }}
      protocol: TCP
      {{- if not $V.meshTls.enabled }}
      appProtocol: kubernetes.io/h2c
      {{- end }}
{{- end }}
{{- end -}}

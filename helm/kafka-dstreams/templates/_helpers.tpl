{{- define "kafka-dstreams.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's object name; a release named like the chart is not repeated. */}}
{{- define "kafka-dstreams.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "kafka-dstreams.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kafka-dstreams.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kafka-dstreams.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kafka-dstreams.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kafka-dstreams.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kafka-dstreams.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kafka-dstreams.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kafka-dstreams.headlessServiceName" -}}
{{- printf "%s-headless" (include "kafka-dstreams.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
A number as the service parses it: values arrive as float64, which Go prints as 1e+06; whole
numbers are printed as integers, others as they are.
*/}}
{{- define "kafka-dstreams.number" -}}
{{- if eq (float64 (int64 .)) (float64 .) -}}
{{- int64 . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* A setting read from a value, or from a key of an existing Secret when one is named. */}}
{{- define "kafka-dstreams.secretOrValue" -}}
{{- if .existingSecret -}}
{{- dict "name" .env "valueFrom" (dict "secretKeyRef" (dict "name" .existingSecret "key" .existingSecretKey)) | toJson -}}
{{- else -}}
{{- dict "name" .env "value" .value | toJson -}}
{{- end -}}
{{- end -}}

{{/*
The container's environment: every setting of service/config.py the chart exposes, the pod's
name as DSTREAMS_INSTANCE_ID, then extraEnv. extraEnv may not repeat a name the chart sets: two
entries of one name are ambiguous to kubectl and server-side apply.
*/}}
{{- define "kafka-dstreams.env" -}}
{{- $v := .Values -}}
{{- $env := list -}}
{{- $env = append $env (dict "name" "DSTREAMS_INSTANCE_ID" "valueFrom" (dict "fieldRef" (dict "fieldPath" "metadata.name"))) -}}
{{- $env = append $env (include "kafka-dstreams.secretOrValue" (dict "env" "KAFKA_BOOTSTRAP_SERVERS" "value" $v.kafka.bootstrapServers "existingSecret" $v.kafka.existingSecret "existingSecretKey" $v.kafka.existingSecretKey) | fromJson) -}}
{{- $env = append $env (include "kafka-dstreams.secretOrValue" (dict "env" "REDIS_URL" "value" $v.redis.url "existingSecret" $v.redis.existingSecret "existingSecretKey" $v.redis.existingSecretKey) | fromJson) -}}
{{- if $v.jobName -}}
{{- $env = append $env (dict "name" "DSTREAMS_JOB_NAME" "value" $v.jobName) -}}
{{- end -}}
{{- if $v.groupId -}}
{{- $env = append $env (dict "name" "DSTREAMS_GROUP_ID" "value" $v.groupId) -}}
{{- end -}}
{{- $env = append $env (dict "name" "DSTREAMS_BATCH_INTERVAL_SECONDS" "value" (include "kafka-dstreams.number" $v.batchIntervalSeconds)) -}}
{{- if $v.maxRatePerPartition -}}
{{- $env = append $env (dict "name" "DSTREAMS_MAX_RATE_PER_PARTITION" "value" (include "kafka-dstreams.number" $v.maxRatePerPartition)) -}}
{{- end -}}
{{- if $v.dlq.topic -}}
{{- $env = append $env (dict "name" "DSTREAMS_DLQ_TOPIC" "value" $v.dlq.topic) -}}
{{- end -}}
{{- $env = append $env (dict "name" "DSTREAMS_DLQ_MAX_ATTEMPTS" "value" (include "kafka-dstreams.number" $v.dlq.maxAttempts)) -}}
{{- if $v.dlq.maxRecordBytes -}}
{{- $env = append $env (dict "name" "DSTREAMS_MAX_RECORD_BYTES" "value" (include "kafka-dstreams.number" $v.dlq.maxRecordBytes)) -}}
{{- end -}}
{{- $env = append $env (dict "name" "DSTREAMS_LOG_LEVEL" "value" $v.logLevel) -}}
{{- $env = append $env (dict "name" "DSTREAMS_METRICS_HOST" "value" "0.0.0.0") -}}
{{- $env = append $env (dict "name" "DSTREAMS_METRICS_PORT" "value" (include "kafka-dstreams.number" $v.metrics.port)) -}}
{{- $env = append $env (dict "name" "DSTREAMS_REDIS_WAIT_REPLICAS" "value" (include "kafka-dstreams.number" $v.redis.waitReplicas)) -}}
{{- $env = append $env (dict "name" "DSTREAMS_REDIS_WAIT_AOF" "value" (toString $v.redis.waitAof)) -}}
{{- $env = append $env (dict "name" "DSTREAMS_REDIS_WAIT_TIMEOUT_MS" "value" (include "kafka-dstreams.number" $v.redis.waitTimeoutMs)) -}}
{{- $env = append $env (dict "name" "DSTREAMS_SHUFFLE" "value" $v.shuffle) -}}
{{- $env = append $env (dict "name" "DSTREAMS_SHUTDOWN_GRACE_SECONDS" "value" (include "kafka-dstreams.number" $v.shutdownGraceSeconds)) -}}
{{- $env = append $env (dict "name" "PYTHONUNBUFFERED" "value" "1") -}}
{{- $env = append $env (dict "name" "PYTHONDONTWRITEBYTECODE" "value" "1") -}}
{{- if $v.jobConfigMap -}}
{{- $env = append $env (dict "name" "PYTHONPATH" "value" "/app/jobs") -}}
{{- end -}}
{{- $names := list -}}
{{- range $env -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- range $v.extraEnv -}}
{{- if has .name $names -}}
{{- fail (printf "extraEnv sets %s, which the chart sets from its values: use the value instead (helm show values)" .name) -}}
{{- end -}}
{{- end -}}
{{- toYaml (concat $env $v.extraEnv) -}}
{{- end -}}

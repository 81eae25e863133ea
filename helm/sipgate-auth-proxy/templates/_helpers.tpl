{{/*
Every helper here takes a context with only .Values and .Release, so that another chart
can call the public ones (sidecarContainer, sidecarVolumes, sidecarAnnotations) with this
chart's values as a dependency:
  (dict "Values" (index .Values "sipgate-auth-proxy") "Release" .Release)
The chart name is fixed for the same reason (a parent's .Chart is not this chart's).
*/}}

{{- define "sipgate-auth-proxy.name" -}}
{{- default "sipgate-auth-proxy" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{- define "sipgate-auth-proxy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "sipgate-auth-proxy.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end }}

{{- define "sipgate-auth-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sipgate-auth-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sipgate-auth-proxy.labels" -}}
{{ include "sipgate-auth-proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/component: auth-proxy
app.kubernetes.io/managed-by: {{ .Release.Service | default "Helm" }}
{{- with .Chart }}
helm.sh/chart: {{ printf "%s-%s" .Name .Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "sipgate-auth-proxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sipgate-auth-proxy.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end }}

{{- define "sipgate-auth-proxy.isSidecar" -}}
{{- if eq .Values.deploymentMode "sidecar" }}true{{ end -}}
{{- end }}

{{- define "sipgate-auth-proxy.mode" -}}
{{- ((.Values.config).auth).mode | default "oauth2" -}}
{{- end }}

{{/* oauth2 and service mode both log in with sipgate's OAuth2 client. */}}
{{- define "sipgate-auth-proxy.usesOAuth2" -}}
{{- if has (include "sipgate-auth-proxy.mode" .) (list "oauth2" "service") }}true{{ end -}}
{{- end }}

{{/* Service mode without Redis keeps the sealed operator login in a file on a volume. */}}
{{- define "sipgate-auth-proxy.stateFile" -}}
{{- if and (eq (include "sipgate-auth-proxy.mode" .) "service") (not (include "sipgate-auth-proxy.redis" .)) }}true{{ end -}}
{{- end }}

{{- define "sipgate-auth-proxy.stateDir" -}}
/var/lib/sipgate-auth-proxy
{{- end }}

{{- define "sipgate-auth-proxy.redis" -}}
{{- if eq (((.Values.config).session).store | default "cookie") "redis" }}true{{ end -}}
{{- end }}

{{/* standalone, sentinel or cluster (session.redis_mode). */}}
{{- define "sipgate-auth-proxy.redisMode" -}}
{{- ((.Values.config).session).redis_mode | default "standalone" -}}
{{- end }}

{{/* The Redis store behind sentinels: no URL, the passwords and CAs in their own files. */}}
{{- define "sipgate-auth-proxy.redisSentinel" -}}
{{- if and (include "sipgate-auth-proxy.redis" .) (eq (include "sipgate-auth-proxy.redisMode" .) "sentinel") }}true{{ end -}}
{{- end }}

{{/* A CA bundle value (redis.tls.ca, redis.tls.sentinelCa) as a file source, or nothing. */}}
{{- define "sipgate-auth-proxy.caSource" -}}
{{- if .ca.secretName -}}
{{- toJson (dict "key" .ca.key "file" .file "section" "session" "option" .option "kind" "secret" "name" .ca.secretName) -}}
{{- else if .ca.configMapName -}}
{{- toJson (dict "key" .ca.key "file" .file "section" "session" "option" .option "kind" "configMap" "name" .ca.configMapName) -}}
{{- end -}}
{{- end }}

{{/* Name of the Secret the chart creates, or the one named in existingSecret. */}}
{{- define "sipgate-auth-proxy.secretName" -}}
{{- default (include "sipgate-auth-proxy.fullname" .) .Values.existingSecret -}}
{{- end }}

{{- define "sipgate-auth-proxy.createSecret" -}}
{{- if not .Values.existingSecret }}true{{ end -}}
{{- end }}

{{/*
Forward auth: mount the front proxy's secret (X-Sipgate-Forward-Auth-Secret)? Always in
the shared modes, where /oauth2/auth answers with the account's credential (the proxy
refuses to start without it); in oauth2 mode only when given (secrets.forwardAuthSecret)
or asked for (forwardAuth.secretFromExistingSecret: the chart cannot see into that Secret).
*/}}
{{- define "sipgate-auth-proxy.forwardAuthSecret" -}}
{{- if ((.Values.config).forward_auth).enabled -}}
{{- if ne (include "sipgate-auth-proxy.mode" .) "oauth2" -}}
true
{{- else if include "sipgate-auth-proxy.createSecret" . -}}
{{- if (.Values.secrets).forwardAuthSecret }}true{{ end -}}
{{- else if (.Values.forwardAuth).secretFromExistingSecret -}}
true
{{- end -}}
{{- end -}}
{{- end }}

{{- define "sipgate-auth-proxy.secretDir" -}}
/var/run/secrets/sipgate-auth-proxy
{{- end }}

{{/*
Which files the configuration reads from the secret volume, as JSON {"files": [...]}, each
{key (in the Secret or ConfigMap), file (in the volume), section + option (where the config
names the file, e.g. auth.oauth2 + client_secret_file), kind (secret or configMap) and name
(the Secret's or ConfigMap's)}.
*/}}
{{- define "sipgate-auth-proxy.secretFiles" -}}
{{- $keys := .Values.secretKeys -}}
{{- $main := include "sipgate-auth-proxy.secretName" . -}}
{{- $files := list -}}
{{- if include "sipgate-auth-proxy.usesOAuth2" . -}}
{{- $files = append $files (dict "key" $keys.clientSecret "file" "client-secret" "section" "auth.oauth2" "option" "client_secret_file" "kind" "secret" "name" $main) -}}
{{- $files = append $files (dict "key" $keys.sessionKeys "file" "session-keys" "section" "session" "option" "keys_file" "kind" "secret" "name" $main) -}}
{{- else -}}
{{- $files = append $files (dict "key" $keys.token "file" "token" "section" "auth.personal_access_token" "option" "token_file" "kind" "secret" "name" $main) -}}
{{- end -}}
{{- if include "sipgate-auth-proxy.forwardAuthSecret" . -}}
{{- $files = append $files (dict "key" $keys.forwardAuthSecret "file" "forward-auth-secret" "section" "forward_auth" "option" "secret_file" "kind" "secret" "name" $main) -}}
{{- end -}}
{{- with .Values.clientsSecret -}}
{{- if .name -}}
{{- $files = append $files (dict "key" .key "file" "clients.yaml" "section" "auth" "option" "clients_file" "kind" "secret" "name" .name) -}}
{{- end -}}
{{- end -}}
{{- with ((.Values.webhooks).publicKeys).configMapName -}}
{{- $files = append $files (dict "key" $.Values.webhooks.publicKeys.key "file" "webhook-keys.pem" "section" "webhooks" "option" "public_keys_file" "kind" "configMap" "name" .) -}}
{{- end -}}
{{- if include "sipgate-auth-proxy.redis" . -}}
{{- $redis := .Values.redis -}}
{{- if not (include "sipgate-auth-proxy.redisSentinel" .) -}}
{{- /* standalone, cluster: the URL carries the credentials and TLS */ -}}
{{- if $redis.existingSecret -}}
{{- $files = append $files (dict "key" $redis.existingSecretKey "file" "redis-url" "section" "session" "option" "redis_url_file" "kind" "secret" "name" $redis.existingSecret) -}}
{{- else -}}
{{- $files = append $files (dict "key" $keys.redisUrl "file" "redis-url" "section" "session" "option" "redis_url_file" "kind" "secret" "name" $main) -}}
{{- end -}}
{{- else -}}
{{- /* sentinel: each password only where one is named (empty key) or given (secrets.*) */ -}}
{{- $password := dict "file" "redis-password" "section" "session" "option" "redis_password_file" "kind" "secret" -}}
{{- $sentinelPassword := dict "file" "redis-sentinel-password" "section" "session" "option" "redis_sentinel_password_file" "kind" "secret" -}}
{{- if $redis.existingSecret -}}
{{- if $redis.existingSecretPasswordKey -}}
{{- $files = append $files (merge (dict "key" $redis.existingSecretPasswordKey "name" $redis.existingSecret) $password) -}}
{{- end -}}
{{- if $redis.existingSecretSentinelPasswordKey -}}
{{- $files = append $files (merge (dict "key" $redis.existingSecretSentinelPasswordKey "name" $redis.existingSecret) $sentinelPassword) -}}
{{- end -}}
{{- else if include "sipgate-auth-proxy.createSecret" . -}}
{{- if .Values.secrets.redisPassword -}}
{{- $files = append $files (merge (dict "key" $keys.redisPassword "name" $main) $password) -}}
{{- end -}}
{{- if .Values.secrets.redisSentinelPassword -}}
{{- $files = append $files (merge (dict "key" $keys.redisSentinelPassword "name" $main) $sentinelPassword) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $tls := $redis.tls | default dict -}}
{{- with include "sipgate-auth-proxy.caSource" (dict "ca" ($tls.ca | default dict) "file" "redis-ca.crt" "option" "redis_tls_ca_file") -}}
{{- $files = append $files (fromJson .) -}}
{{- end -}}
{{- if include "sipgate-auth-proxy.redisSentinel" . -}}
{{- with include "sipgate-auth-proxy.caSource" (dict "ca" ($tls.sentinelCa | default dict) "file" "redis-sentinel-ca.crt" "option" "redis_sentinel_tls_ca_file") -}}
{{- $files = append $files (fromJson .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "files" $files) -}}
{{- end }}

{{/*
public_url: the configured one; else, in service mode with the management listener (where
the operator signs in), http://localhost:<management port>; else https://<first Ingress host>.
*/}}
{{- define "sipgate-auth-proxy.publicUrl" -}}
{{- $url := (.Values.config).public_url | default "" -}}
{{- if and (not $url) (eq (include "sipgate-auth-proxy.mode" .) "service") .Values.management.enabled -}}
{{- /* service mode: the operator signs in on the management listener (kubectl port-forward) */ -}}
{{- $url = printf "http://localhost:%d" (int .Values.management.port) -}}
{{- end -}}
{{- if and (not $url) .Values.ingress.enabled (not (include "sipgate-auth-proxy.isSidecar" .)) -}}
{{- with (first .Values.ingress.hosts) -}}
{{- $url = printf "https://%s" .host -}}
{{- end -}}
{{- end -}}
{{- $url -}}
{{- end }}

{{/* Remove keys whose value is "" or null, recursively (unset values take the proxy's defaults). */}}
{{- define "sipgate-auth-proxy.prune" -}}
{{- $map := . -}}
{{- range $key, $value := $map -}}
{{- if or (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value "")) -}}
{{- $_ := unset $map $key -}}
{{- else if kindIs "map" $value -}}
{{- include "sipgate-auth-proxy.prune" $value -}}
{{- if not $value -}}{{- $_ := unset $map $key -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* Refuse combinations that cannot work, with a message naming the value to set. */}}
{{- define "sipgate-auth-proxy.validate" -}}
{{- $mode := include "sipgate-auth-proxy.mode" . -}}
{{- $sidecar := include "sipgate-auth-proxy.isSidecar" . -}}
{{- $create := include "sipgate-auth-proxy.createSecret" . -}}
{{- $config := .Values.config | default dict -}}
{{- range $key, $why := dict "listen" "containerPort (and deploymentMode)" "management" "management.enabled and management.port" -}}
{{- if hasKey $config $key -}}
{{- fail (printf "config.%s is set by the chart: remove it and use %s" $key $why) -}}
{{- end -}}
{{- end -}}
{{- $fromSecret := "existingSecret, or secrets.* and secretKeys.*" -}}
{{- $fromRedisSecret := "redis.existingSecret, existingSecret, or secrets.* and secretKeys.*" -}}
{{- range $path, $where := dict "auth.oauth2.client_secret" $fromSecret "auth.oauth2.client_secret_file" $fromSecret "auth.personal_access_token.token" $fromSecret "auth.personal_access_token.token_file" $fromSecret "session.keys" $fromSecret "session.keys_file" $fromSecret "session.redis_url" $fromRedisSecret "session.redis_url_file" $fromRedisSecret "session.redis_password" $fromRedisSecret "session.redis_password_file" $fromRedisSecret "session.redis_sentinel_password" $fromRedisSecret "session.redis_sentinel_password_file" $fromRedisSecret "forward_auth.secret" $fromSecret "forward_auth.secret_file" $fromSecret -}}
{{- $node := $config -}}
{{- $parts := splitList "." $path -}}
{{- range initial $parts -}}
{{- $node = get $node . | default dict -}}
{{- end -}}
{{- if hasKey $node (last $parts) -}}
{{- fail (printf "config.%s: secrets come from the Secret (%s), mounted as files by the chart; remove it from config" $path $where) -}}
{{- end -}}
{{- end -}}
{{- range $key, $value := dict "redis_tls_ca_file" "redis.tls.ca" "redis_sentinel_tls_ca_file" "redis.tls.sentinelCa" -}}
{{- if hasKey ($config.session | default dict) $key -}}
{{- fail (printf "config.session.%s is set by the chart: name the Secret or ConfigMap holding the CA in %s (secretName or configMapName, and key); remove it from config" $key $value) -}}
{{- end -}}
{{- end -}}
{{- if hasKey ($config.tracing | default dict) "headers" -}}
{{- fail "config.tracing.headers: a secret: put them into a Secret named in tracing.headersSecret (set as SIPGATE_PROXY_TRACING__HEADERS); remove them from config" -}}
{{- end -}}
{{- if hasKey ($config.webhooks | default dict) "public_keys_file" -}}
{{- fail "config.webhooks.public_keys_file is set by the chart: name the ConfigMap that holds the PEM keys in webhooks.publicKeys.configMapName; remove it from config" -}}
{{- end -}}
{{- if hasKey ($config.auth | default dict) "clients_file" -}}
{{- fail "config.auth.clients_file is set by the chart: name the Secret that holds the clients file in clientsSecret.name; remove it from config" -}}
{{- end -}}
{{- if hasKey ((($config.auth).service) | default dict) "state_file" -}}
{{- fail "config.auth.service.state_file is set by the chart (a volume at /var/lib/sipgate-auth-proxy, see serviceState); remove it from config" -}}
{{- end -}}
{{- if and (.Values.forwardAuth).secretFromExistingSecret $create -}}
{{- fail "forwardAuth.secretFromExistingSecret reads secretKeys.forwardAuthSecret from existingSecret: set existingSecret, or secrets.forwardAuthSecret for the Secret the chart makes" -}}
{{- end -}}
{{- if and ($config.forward_auth).enabled (ne $mode "oauth2") $create (not .Values.secrets.forwardAuthSecret) -}}
{{- fail (printf "config.forward_auth.enabled in %s mode needs the front proxy's secret (X-Sipgate-Forward-Auth-Secret): set existingSecret (key secretKeys.forwardAuthSecret) or secrets.forwardAuthSecret (sipgate-auth-proxy generate-key makes one); here /oauth2/auth answers with the account's own credential" $mode) -}}
{{- end -}}
{{- if and $sidecar (not .Values.management.enabled) -}}
{{- fail "deploymentMode sidecar needs management.enabled: true (the probes use the management port; the proxy port listens on 127.0.0.1 only)" -}}
{{- end -}}
{{- if include "sipgate-auth-proxy.usesOAuth2" . -}}
{{- if not ((.Values.config.auth).oauth2).client_id -}}
{{- fail (printf "%s mode needs config.auth.oauth2.client_id (from console.sipgate.com)" $mode) -}}
{{- end -}}
{{- if not (include "sipgate-auth-proxy.publicUrl" .) -}}
{{- fail (printf "%s mode needs config.public_url (the origin browsers use) or an enabled Ingress" $mode) -}}
{{- end -}}
{{- if and $create (not .Values.secrets.clientSecret) -}}
{{- fail (printf "%s mode needs the client secret: set existingSecret (recommended) or secrets.clientSecret" $mode) -}}
{{- end -}}
{{- if and $create (not .Values.secrets.sessionKeys) -}}
{{- fail (printf "%s mode needs session keys: set existingSecret (recommended) or secrets.sessionKeys (create one with: sipgate-auth-proxy generate-key)" $mode) -}}
{{- end -}}
{{- end -}}
{{- if eq $mode "service" -}}
{{- if not (((.Values.config.auth).service).allowed_subjects) -}}
{{- fail "service mode needs config.auth.service.allowed_subjects (the operator's subject, shown by /oauth2/service after a first sign-in)" -}}
{{- end -}}
{{- if include "sipgate-auth-proxy.stateFile" . -}}
{{- $replicas := ternary (int .Values.autoscaling.maxReplicas) (int .Values.replicaCount) (and .Values.autoscaling.enabled (not $sidecar)) -}}
{{- if and (not $sidecar) (gt $replicas 1) -}}
{{- fail "service mode with the identity in a file (session.store cookie) runs one replica: set replicaCount 1 (and no autoscaling), or config.session.store: redis for several" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if eq $mode "personal_access_token" -}}
{{- if not ((.Values.config.auth).personal_access_token).token_id -}}
{{- fail "personal_access_token mode needs config.auth.personal_access_token.token_id (token-XXXXXX)" -}}
{{- end -}}
{{- if and $create (not .Values.secrets.token) -}}
{{- fail "personal_access_token mode needs the token: set existingSecret (recommended) or secrets.token" -}}
{{- end -}}
{{- end -}}
{{- if and (has $mode (list "personal_access_token" "service")) (not $sidecar) -}}
{{- $loopbackOnly := true -}}
{{- range (.Values.config.auth).allowed_client_networks | default (list "127.0.0.0/8") -}}
{{- if not (or (hasPrefix "127." .) (eq . "::1/128")) -}}{{- $loopbackOnly = false -}}{{- end -}}
{{- end -}}
{{- if $loopbackOnly -}}
{{- fail (printf "a standalone %s proxy with config.auth.allowed_client_networks on loopback only serves nobody: list the networks of its clients (e.g. the pod CIDR), or use deploymentMode: sidecar" $mode) -}}
{{- end -}}
{{- end -}}
{{- if include "sipgate-auth-proxy.redis" . -}}
{{- include "sipgate-auth-proxy.validateRedis" . -}}
{{- end -}}
{{- end }}

{{/* The Redis store's values, by session.redis_mode (see values.yaml, redis.*). */}}
{{- define "sipgate-auth-proxy.validateRedis" -}}
{{- $create := include "sipgate-auth-proxy.createSecret" . -}}
{{- $redisMode := include "sipgate-auth-proxy.redisMode" . -}}
{{- $session := .Values.config.session -}}
{{- $redis := .Values.redis -}}
{{- $tls := $redis.tls | default dict -}}
{{- range $name := list "ca" "sentinelCa" -}}
{{- $ca := get $tls $name | default dict -}}
{{- if and $ca.secretName $ca.configMapName -}}
{{- fail (printf "redis.tls.%s: set secretName or configMapName, not both" $name) -}}
{{- end -}}
{{- end -}}
{{- $ca := or (dig "ca" "secretName" "" $tls) (dig "ca" "configMapName" "" $tls) -}}
{{- $sentinelCa := or (dig "sentinelCa" "secretName" "" $tls) (dig "sentinelCa" "configMapName" "" $tls) -}}
{{- if eq $redisMode "sentinel" -}}
{{- if and $create .Values.secrets.redisUrl -}}
{{- fail "session.redis_mode sentinel reads no Redis URL (the sentinels name the primary): remove secrets.redisUrl" -}}
{{- end -}}
{{- if and (not $create) (not $redis.existingSecret) -}}
{{- fail "session.redis_mode sentinel with existingSecret: name the Secret holding the Redis passwords in redis.existingSecret (it may be the same Secret) and their keys in redis.existingSecretPasswordKey and redis.existingSecretSentinelPasswordKey (empty: no password)" -}}
{{- end -}}
{{- if and $redis.existingSecret (or .Values.secrets.redisPassword .Values.secrets.redisSentinelPassword) -}}
{{- fail "secrets.redisPassword and secrets.redisSentinelPassword are not used with redis.existingSecret (its keys redis.existingSecretPasswordKey and redis.existingSecretSentinelPasswordKey are): remove them" -}}
{{- end -}}
{{- if and $ca (not $session.redis_tls) -}}
{{- fail "redis.tls.ca is the data nodes' CA: with session.redis_mode sentinel it needs config.session.redis_tls: true" -}}
{{- end -}}
{{- if and $sentinelCa (not $session.redis_sentinel_tls) -}}
{{- fail "redis.tls.sentinelCa is the sentinels' CA: it needs config.session.redis_sentinel_tls: true" -}}
{{- end -}}
{{- else -}}
{{- if and $create (not $redis.existingSecret) (not .Values.secrets.redisUrl) -}}
{{- fail (printf "session.store redis (redis_mode %s) needs the Redis URL: set redis.existingSecret, existingSecret (with key secretKeys.redisUrl) or secrets.redisUrl" $redisMode) -}}
{{- end -}}
{{- if and $create (or .Values.secrets.redisPassword .Values.secrets.redisSentinelPassword) -}}
{{- fail (printf "secrets.redisPassword and secrets.redisSentinelPassword are for session.redis_mode sentinel only (with %s, put the password into the Redis URL): remove them" $redisMode) -}}
{{- end -}}
{{- if $sentinelCa -}}
{{- fail (printf "redis.tls.sentinelCa is for session.redis_mode sentinel only (not %s): remove it" $redisMode) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* The proxy's configuration file (YAML). */}}
{{- define "sipgate-auth-proxy.configYaml" -}}
{{- include "sipgate-auth-proxy.validate" . -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- $host := ternary "127.0.0.1" "0.0.0.0" (eq .Values.deploymentMode "sidecar") -}}
{{- $_ := set $config "listen" (dict "host" $host "port" (int .Values.containerPort)) -}}
{{- if .Values.management.enabled -}}
{{- $_ := set $config "management" (dict "listen" (dict "host" "0.0.0.0" "port" (int .Values.management.port))) -}}
{{- end -}}
{{- $publicUrl := include "sipgate-auth-proxy.publicUrl" . -}}
{{- if $publicUrl -}}
{{- $_ := set $config "public_url" $publicUrl -}}
{{- end -}}
{{- if include "sipgate-auth-proxy.stateFile" . -}}
{{- $auth := get $config "auth" -}}
{{- if not (hasKey $auth "service") -}}{{- $_ := set $auth "service" dict -}}{{- end -}}
{{- $_ := set (get $auth "service") "state_file" (printf "%s/identity" (include "sipgate-auth-proxy.stateDir" .)) -}}
{{- end -}}
{{- $dir := include "sipgate-auth-proxy.secretDir" . -}}
{{- range (include "sipgate-auth-proxy.secretFiles" . | fromJson).files -}}
{{- $section := $config -}}
{{- range splitList "." .section -}}
{{- if not (hasKey $section .) -}}{{- $_ := set $section . dict -}}{{- end -}}
{{- $section = get $section . -}}
{{- end -}}
{{- $_ := set $section .option (printf "%s/%s" $dir .file) -}}
{{- end -}}
{{- include "sipgate-auth-proxy.prune" $config -}}
{{- toYaml $config -}}
{{- end }}

{{/* The Secret's data (base64), when the chart creates it. */}}
{{- define "sipgate-auth-proxy.secretData" -}}
{{- $keys := .Values.secretKeys -}}
{{- $data := dict -}}
{{- with .Values.secrets -}}
{{- if .clientSecret }}{{ $_ := set $data $keys.clientSecret (.clientSecret | b64enc) }}{{ end -}}
{{- if .sessionKeys }}{{ $_ := set $data $keys.sessionKeys (printf "%s\n" (join "\n" .sessionKeys) | b64enc) }}{{ end -}}
{{- if .token }}{{ $_ := set $data $keys.token (.token | b64enc) }}{{ end -}}
{{- if .redisUrl }}{{ $_ := set $data $keys.redisUrl (.redisUrl | b64enc) }}{{ end -}}
{{- if .redisPassword }}{{ $_ := set $data $keys.redisPassword (.redisPassword | b64enc) }}{{ end -}}
{{- if .redisSentinelPassword }}{{ $_ := set $data $keys.redisSentinelPassword (.redisSentinelPassword | b64enc) }}{{ end -}}
{{- if .forwardAuthSecret }}{{ $_ := set $data $keys.forwardAuthSecret (.forwardAuthSecret | b64enc) }}{{ end -}}
{{- end -}}
{{- toYaml $data -}}
{{- end }}

{{/*
Pod annotations that roll the pods when the configuration or the chart-made Secret
changes. (A Secret named in existingSecret is not seen by Helm: after changing it, run
kubectl rollout restart.)
*/}}
{{- define "sipgate-auth-proxy.sidecarAnnotations" -}}
checksum/sipgate-auth-proxy-config: {{ include "sipgate-auth-proxy.configYaml" . | sha256sum }}
{{- if include "sipgate-auth-proxy.createSecret" . }}
checksum/sipgate-auth-proxy-secret: {{ include "sipgate-auth-proxy.secretData" . | sha256sum }}
{{- end }}
{{- end }}

{{- define "sipgate-auth-proxy.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end }}

{{- define "sipgate-auth-proxy.probePort" -}}
{{- if .Values.management.enabled }}management{{ else }}http{{ end -}}
{{- end }}

{{/* The proxy container: the Deployment's, and the sidecar other charts include. */}}
{{- define "sipgate-auth-proxy.sidecarContainer" -}}
{{- $probePort := include "sipgate-auth-proxy.probePort" . -}}
- name: sipgate-auth-proxy
  image: {{ include "sipgate-auth-proxy.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if and .Values.nativeSidecar (eq .Values.deploymentMode "sidecar") }}
  restartPolicy: Always
  {{- end }}
  args: ["--config", "/etc/sipgate-auth-proxy/config.yaml"]
  ports:
    - name: http
      containerPort: {{ .Values.containerPort }}
      protocol: TCP
    {{- if .Values.management.enabled }}
    - name: management
      containerPort: {{ .Values.management.port }}
      protocol: TCP
    {{- end }}
  {{- $headers := ((.Values.tracing).headersSecret).name }}
  {{- if or .Values.extraEnv $headers }}
  env:
    {{- with $headers }}
    - name: SIPGATE_PROXY_TRACING__HEADERS
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: {{ $.Values.tracing.headersSecret.key }}
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- with .Values.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  startupProbe:
    httpGet:
      path: /healthz
      port: {{ $probePort }}
    {{- toYaml .Values.startupProbe | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ $probePort }}
    {{- toYaml .Values.livenessProbe | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ $probePort }}
    {{- toYaml .Values.readinessProbe | nindent 4 }}
  {{- if .Values.preStopSleepSeconds }}
  lifecycle:
    preStop:
      exec:
        command: ["sleep", {{ .Values.preStopSleepSeconds | toString | quote }}]
  {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  volumeMounts:
    - name: sipgate-auth-proxy-config
      mountPath: /etc/sipgate-auth-proxy
      readOnly: true
    - name: sipgate-auth-proxy-secrets
      mountPath: {{ include "sipgate-auth-proxy.secretDir" . }}
      readOnly: true
    - name: sipgate-auth-proxy-tmp
      mountPath: /tmp
    {{- if include "sipgate-auth-proxy.stateFile" . }}
    - name: sipgate-auth-proxy-state
      mountPath: {{ include "sipgate-auth-proxy.stateDir" . }}
    {{- end }}
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* The volumes the container needs (include them in the pod's volumes). */}}
{{- define "sipgate-auth-proxy.sidecarVolumes" -}}
- name: sipgate-auth-proxy-config
  configMap:
    name: {{ include "sipgate-auth-proxy.fullname" . }}
- name: sipgate-auth-proxy-secrets
  projected:
    defaultMode: 0444
    sources:
      {{- $bySource := dict -}}
      {{- range (include "sipgate-auth-proxy.secretFiles" . | fromJson).files -}}
      {{- $source := printf "%s/%s" .kind .name -}}
      {{- $_ := set $bySource $source (append (get $bySource $source | default list) .) -}}
      {{- end }}
      {{- range $source, $files := $bySource }}
      - {{ (first $files).kind }}:
          name: {{ (first $files).name }}
          items:
            {{- range $files }}
            - key: {{ .key }}
              path: {{ .file }}
            {{- end }}
      {{- end }}
- name: sipgate-auth-proxy-tmp
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- if include "sipgate-auth-proxy.stateFile" . }}
- name: sipgate-auth-proxy-state
  {{- if .Values.serviceState.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.serviceState.persistence.existingClaim | default (printf "%s-state" (include "sipgate-auth-proxy.fullname" .)) }}
  {{- else }}
  emptyDir:
    sizeLimit: 1Mi
  {{- end }}
{{- end }}
{{- end }}

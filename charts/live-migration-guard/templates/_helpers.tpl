{{/* Chart name, overridable with nameOverride. */}}
{{- define "live-migration-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, also the name of the Service the webhook calls. Truncated to 63
characters (DNS label limit); the release name is used alone when it already contains the chart
name.
*/}}
{{- define "live-migration-guard.fullname" -}}
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

{{/* Chart name and version for the helm.sh/chart label. */}}
{{- define "live-migration-guard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "live-migration-guard.labels" -}}
helm.sh/chart: {{ include "live-migration-guard.chart" . }}
{{ include "live-migration-guard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The metadata `annotations:` block of a resource: commonAnnotations merged with the resource's own
(which win). Call with (dict "root" $ "extra" $annotations); renders nothing when both are empty.
*/}}
{{- define "live-migration-guard.annotations" -}}
{{- $all := merge (deepCopy (default dict .extra)) (deepCopy (default dict .root.Values.commonAnnotations)) }}
{{- with $all -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
"true" when the OpenShift conventions apply (openshift.enabled: auto | true | false): auto looks
for OpenShift API groups (the cluster's at install; --api-versions with helm template) and treats
tls.mode=openshift-service-ca as OpenShift.
*/}}
{{- define "live-migration-guard.isOpenShift" -}}
{{- $mode := toString .Values.openshift.enabled }}
{{- if eq $mode "true" }}true
{{- else if eq $mode "false" }}
{{- else if or (.Capabilities.APIVersions.Has "config.openshift.io/v1") (.Capabilities.APIVersions.Has "security.openshift.io/v1") (eq .Values.tls.mode "openshift-service-ca") }}true
{{- end }}
{{- end }}

{{/* The pods' PriorityClass: the value, else system-cluster-critical under failurePolicy Fail. */}}
{{- define "live-migration-guard.priorityClassName" -}}
{{- if .Values.priorityClassName }}
{{- .Values.priorityClassName }}
{{- else if eq .Values.webhook.failurePolicy "Fail" }}
{{- "system-cluster-critical" }}
{{- end }}
{{- end }}

{{/*
The server's per-request deadline (--request-timeout): one second below webhook.timeoutSeconds,
at least 1 s, so the server answers (or gives up) before the API server stops waiting.
*/}}
{{- define "live-migration-guard.requestTimeout" -}}
{{- max 1 (sub (int .Values.webhook.timeoutSeconds) 1) }}s
{{- end }}

{{/* The network policy preset in effect: openshift or none. */}}
{{- define "live-migration-guard.networkPolicyPreset" -}}
{{- $preset := .Values.networkPolicy.preset }}
{{- if eq $preset "auto" }}
{{- ternary "openshift" "none" (eq (include "live-migration-guard.isOpenShift" .) "true") }}
{{- else }}
{{- $preset }}
{{- end }}
{{- end }}

{{/* The monitor (ServiceMonitor or PodMonitor) values in use, as YAML; empty without one. */}}
{{- define "live-migration-guard.monitor" -}}
{{- if .Values.serviceMonitor.enabled }}
{{- toYaml .Values.serviceMonitor }}
{{- else if .Values.podMonitor.enabled }}
{{- toYaml .Values.podMonitor }}
{{- end }}
{{- end }}

{{/*
PromQL label matchers of the webhook's own scrape targets: prometheusRule.selector, else the job
label the Prometheus Operator gives the chart's ServiceMonitor (the Service name) or PodMonitor
(<namespace>/<name>). Fails without either: the Down alert would fire forever.
*/}}
{{- define "live-migration-guard.targetSelector" -}}
{{- $fullname := include "live-migration-guard.fullname" . }}
{{- if .Values.prometheusRule.selector }}
{{- .Values.prometheusRule.selector }}
{{- else if .Values.serviceMonitor.enabled }}
{{- printf "job=%q, namespace=%q" $fullname .Release.Namespace }}
{{- else if .Values.podMonitor.enabled }}
{{- printf "job=%q, namespace=%q" (printf "%s/%s" .Release.Namespace $fullname) .Release.Namespace }}
{{- else }}
{{- fail "prometheusRule.enabled needs serviceMonitor.enabled or podMonitor.enabled (or prometheusRule.selector for your own scrape configuration): without a scrape target LiveMigrationGuardDown fires forever" }}
{{- end }}
{{- end }}

{{/* Labels that select the webhook pods (Deployment, Service, PDB, NetworkPolicy). */}}
{{- define "live-migration-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "live-migration-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* ServiceAccount the pods run as. */}}
{{- define "live-migration-guard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "live-migration-guard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Container image reference: the digest wins over the tag. */}}
{{- define "live-migration-guard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of the serving certificate Secret mounted at /etc/live-migration-guard/tls. */}}
{{- define "live-migration-guard.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "live-migration-guard.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/* DNS names of the Service, as a YAML list: the serving certificate's SANs. */}}
{{- define "live-migration-guard.dnsNames" -}}
{{- $svc := include "live-migration-guard.fullname" . -}}
- {{ $svc }}
- {{ $svc }}.{{ .Release.Namespace }}
- {{ $svc }}.{{ .Release.Namespace }}.svc
- {{ $svc }}.{{ .Release.Namespace }}.svc.cluster.local
{{- end }}

{{/*
terminationGracePeriodSeconds: the kubelet kills the container after this, so it must cover the
preStop sleep, the server's shutdown delay and its drain timeout. Computed with a 5 s margin
unless set; an explicit value that is too small fails the render.
*/}}
{{- define "live-migration-guard.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown }}
{{- $needed := add (int $s.preStopSleepSeconds) (int $s.delaySeconds) (int $s.timeoutSeconds) }}
{{- if eq (toString $s.terminationGracePeriodSeconds) "" }}
{{- add $needed 5 }}
{{- else if le (int $s.terminationGracePeriodSeconds) $needed }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) must be larger than preStopSleepSeconds + delaySeconds + timeoutSeconds (%d), or the kubelet kills the server while it drains" (int $s.terminationGracePeriodSeconds) $needed) }}
{{- else }}
{{- int $s.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* "true" when the server sends TokenReviews/SubjectAccessReviews (side endpoints or /metrics). */}}
{{- define "live-migration-guard.usesKubeAuth" -}}
{{- if or (and .Values.sideEndpoints.separatePort (eq .Values.sideEndpoints.auth "kubernetes")) (eq .Values.metricsAuth "kubernetes") }}true{{ end }}
{{- end }}

{{/* Rejects invalid value combinations with a message that says what to change. */}}
{{- define "live-migration-guard.validateValues" -}}
{{- if not (has .Values.mode (list "warn" "deny" "off")) }}
{{- fail (printf "mode must be warn, deny or off, not %q" .Values.mode) }}
{{- end }}
{{- if not (has .Values.logging.format (list "json" "text")) }}
{{- fail (printf "logging.format must be json or text, not %q" .Values.logging.format) }}
{{- end }}
{{- if not (has .Values.tls.mode (list "openshift-service-ca" "cert-manager" "provided" "self-signed")) }}
{{- fail (printf "tls.mode must be one of openshift-service-ca, cert-manager, provided, self-signed, not %q" .Values.tls.mode) }}
{{- end }}
{{- if and (eq .Values.tls.mode "openshift-service-ca") .Values.tls.serviceCACheck }}
{{- include "live-migration-guard.checkServiceCA" . }}
{{- end }}
{{- if not (has (toString .Values.openshift.enabled) (list "auto" "true" "false")) }}
{{- fail (printf "openshift.enabled must be auto, true or false, not %q" (toString .Values.openshift.enabled)) }}
{{- end }}
{{- if not (has .Values.networkPolicy.preset (list "auto" "openshift" "none")) }}
{{- fail (printf "networkPolicy.preset must be auto, openshift or none, not %q" .Values.networkPolicy.preset) }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled .Values.podMonitor.enabled }}
{{- fail "enable serviceMonitor or podMonitor, not both: every pod would be scraped twice" }}
{{- end }}
{{- $side := .Values.sideEndpoints }}
{{- if not (has $side.auth (list "kubernetes" "token" "none")) }}
{{- fail (printf "sideEndpoints.auth must be kubernetes, token or none, not %q" $side.auth) }}
{{- end }}
{{- if and (not $side.separatePort) (ne $side.auth "none") }}
{{- fail (printf "sideEndpoints.auth=%s needs sideEndpoints.separatePort=true: the side endpoints are authenticated on their own port, the webhook port stays open for the API server (or set sideEndpoints.auth=none)" $side.auth) }}
{{- end }}
{{- if and $side.separatePort (eq $side.auth "token") (not $side.tokenSecret) }}
{{- fail "sideEndpoints.auth=token needs sideEndpoints.tokenSecret: an existing Secret holding the token (kubectl create secret generic NAME --from-literal=token=$(openssl rand -hex 32))" }}
{{- end }}
{{- if not (has .Values.metricsAuth (list "kubernetes" "none")) }}
{{- fail (printf "metricsAuth must be kubernetes or none, not %q" .Values.metricsAuth) }}
{{- end }}
{{- if and (eq .Values.metricsAuth "kubernetes") .Values.podMonitor.enabled }}
{{- fail "metricsAuth=kubernetes with podMonitor.enabled: the PodMonitor cannot send a token from a file; use serviceMonitor.enabled (it sends its Prometheus' ServiceAccount token) or your own scrape configuration" }}
{{- end }}
{{- if and .Values.helmTest.enabled $side.separatePort (eq $side.auth "token") }}
{{- fail "helmTest.enabled with sideEndpoints.auth=token: the test Pod calls /v1/evaluate with its own ServiceAccount token, which needs sideEndpoints.auth=kubernetes; set helmTest.enabled=false" }}
{{- end }}
{{- $infra := .Values.infraCredentials }}
{{- if and $infra.enabled (not $infra.namespaces) (not $infra.clusterWide) }}
{{- fail "infraCredentials.enabled without infraCredentials.namespaces grants `get` on every Secret in the cluster, including every hosted control plane's kubeconfig: list the HostedCluster namespaces in infraCredentials.namespaces, or confirm with infraCredentials.clusterWide=true" }}
{{- end }}
{{- if eq .Values.tls.mode "provided" }}
{{- $_ := required "tls.mode=provided needs tls.secretName: the name of an existing kubernetes.io/tls Secret (tls.crt, tls.key) in the release namespace" .Values.tls.secretName }}
{{- $bundle := required "tls.mode=provided needs tls.caBundle: the base64-encoded PEM of the CA that signed the certificate in tls.secretName (e.g. --set tls.caBundle=$(base64 -w0 ca.crt))" .Values.tls.caBundle }}
{{- if not (contains "-----BEGIN CERTIFICATE-----" (b64dec $bundle)) }}
{{- fail "tls.caBundle must be base64-encoded PEM (it did not decode to a -----BEGIN CERTIFICATE----- block); use $(base64 -w0 ca.crt)" }}
{{- end }}
{{- end }}
{{- with .Values.tls.certManager.issuerRef }}
{{- if not .name }}
{{- fail "tls.certManager.issuerRef needs a name (and kind: Issuer or ClusterIssuer)" }}
{{- end }}
{{- end }}
{{- $webhook := .Values.webhook }}
{{- if not (has $webhook.failurePolicy (list "Ignore" "Fail")) }}
{{- fail (printf "webhook.failurePolicy must be Ignore or Fail, not %q" $webhook.failurePolicy) }}
{{- end }}
{{- if and (eq $webhook.failurePolicy "Fail") (or (lt (int .Values.replicaCount) 2) (not .Values.podDisruptionBudget.enabled)) }}
{{- fail "webhook.failurePolicy=Fail needs replicaCount >= 2 and podDisruptionBudget.enabled, otherwise one lost pod blocks every KubeVirt NodePool/HostedCluster write" }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (eq (toString $pdb.maxUnavailable) "") (not (kindIs "string" $pdb.minAvailable)) (ge (int $pdb.minAvailable) (int .Values.replicaCount)) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) must be below replicaCount (%d), otherwise no pod can ever be evicted and node drains hang" (int $pdb.minAvailable) (int .Values.replicaCount)) }}
{{- end }}
{{- if and $pdb.enabled (gt (int .Values.replicaCount) 1) }}
{{- include "live-migration-guard.checkSingleNode" . }}
{{- end }}
{{- if or (lt (int $webhook.timeoutSeconds) 1) (gt (int $webhook.timeoutSeconds) 30) }}
{{- fail (printf "webhook.timeoutSeconds must be between 1 and 30, not %v" $webhook.timeoutSeconds) }}
{{- end }}
{{- if .Values.clientAuth.enabled }}
{{- if eq (empty .Values.clientAuth.caConfigMap) (empty .Values.clientAuth.caSecret) }}
{{- fail "clientAuth.enabled needs exactly one of clientAuth.caConfigMap or clientAuth.caSecret (the CA bundle that signs the API server's client certificate)" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
tls.mode=openshift-service-ca on a cluster without the service CA operator: nothing ever creates
the serving Secret, so the pods hang in ContainerCreating and the webhook has no caBundle. When a
cluster answers (helm install/upgrade, --dry-run=server: lookup sees kube-system), require an
OpenShift API group. Offline renders (helm template, helm lint) cannot tell and pass.
*/}}
{{- define "live-migration-guard.checkServiceCA" -}}
{{- $openshift := or (.Capabilities.APIVersions.Has "config.openshift.io/v1") (.Capabilities.APIVersions.Has "operator.openshift.io/v1") }}
{{- if and (not $openshift) (lookup "v1" "Namespace" "" "kube-system") }}
{{- fail "tls.mode=openshift-service-ca, but this cluster is not OpenShift (it serves neither config.openshift.io/v1 nor operator.openshift.io/v1), so no service CA will create the serving Secret: the pods would stay in ContainerCreating and the webhook would have no caBundle. Choose --set tls.mode=cert-manager if cert-manager is installed, tls.mode=provided with your own certificate, or tls.mode=self-signed for development (see the chart README, Installing). tls.serviceCACheck=false skips this check." }}
{{- end }}
{{- end }}

{{/* The scrape settings shared by the ServiceMonitor endpoint and the PodMonitor endpoint. */}}
{{- define "live-migration-guard.scrapeEndpoint" -}}
path: /metrics
scheme: http
{{- if .bearerTokenFile }}
bearerTokenFile: {{ .bearerTokenFile }}
{{- end }}
interval: {{ .interval }}
{{- with .scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
{{- if .honorLabels }}
honorLabels: true
{{- end }}
{{- with .relabelings }}
relabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
A single-node cluster (seen when a cluster answers: helm install/upgrade): all replicas run on
that node, and draining it can never finish — the evicted pod's replacement cannot schedule on the
cordoned node, so the PodDisruptionBudget refuses the last eviction. Only a PDB that allows every
pod to go (maxUnavailable >= replicaCount or 100%) or no PDB lets the drain through.
*/}}
{{- define "live-migration-guard.checkSingleNode" -}}
{{- $nodes := dig "items" (list) (lookup "v1" "Node" "" "") }}
{{- if eq (len $nodes) 1 }}
{{- $max := toString .Values.podDisruptionBudget.maxUnavailable }}
{{- $allowsAll := or (eq $max "100%") (and (ne $max "") (not (contains "%" $max)) (ge (int $max) (int .Values.replicaCount))) }}
{{- if not $allowsAll }}
{{- fail (printf "this cluster has a single node: with %d replicas on it and a PodDisruptionBudget, a node drain can never finish (the evicted pod's replacement cannot schedule on the cordoned node, so the budget refuses the last eviction). Set podDisruptionBudget.maxUnavailable=100%% (keeps failurePolicy=Fail possible), or podDisruptionBudget.enabled=false with webhook.failurePolicy=Ignore (replicaCount=1 then saves a pod)" (int .Values.replicaCount)) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of the helm test hook objects: not the webhook pods' name label, so no selector of
the chart (Service, PDB, NetworkPolicy) picks up the test Pod. */}}
{{- define "live-migration-guard.testLabels" -}}
helm.sh/chart: {{ include "live-migration-guard.chart" . }}
app.kubernetes.io/name: {{ include "live-migration-guard.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

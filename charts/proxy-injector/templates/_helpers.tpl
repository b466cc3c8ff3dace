{{- define "injector.cpns" -}}
{{- default "linkerd" .Values.injector.controlPlaneNamespace -}}
{{- end -}}

{{- define "injector.labels" -}}
app.kubernetes.io/name: proxy-injector
app.kubernetes.io/part-of: linkerd
linkerd.io/control-plane-component: proxy-injector
linkerd.io/control-plane-ns: {{ include "injector.cpns" . }}
{{- end -}}

{{- define "injector.meta" -}}
namespace: {{ .Release.Namespace }}
labels:
  {{- include "injector.labels" . | nindent 2 }}
{{- end -}}

{{/* Deny (failurePolicy Fail) with ha or webhookFailurePolicy Fail, else admit (Ignore). */}}
{{- define "injector.deny" -}}
{{- if or .Values.injector.ha (eq (toString .Values.webhookFailurePolicy) "Fail") -}}true{{- end -}}
{{- end -}}

{{/* The host of webhookUrl: https://HOST[:PORT]/PATH */}}
{{- define "injector.urlHost" -}}
{{- $authority := index (splitList "/" (trimPrefix "https://" .Values.injector.webhookUrl)) 0 -}}
{{- if hasPrefix "[" $authority -}}
{{- index (splitList "]" (trimPrefix "[" $authority)) 0 -}}
{{- else -}}
{{- index (splitList ":" $authority) 0 -}}
{{- end -}}
{{- end -}}

{{- define "injector.dnsNames" -}}
{{- $names := list (printf "proxy-injector.%s.svc" .Release.Namespace) (printf "proxy-injector.%s.svc.cluster.local" .Release.Namespace) -}}
{{- if .Values.injector.webhookUrl -}}{{- $names = append $names (include "injector.urlHost" .) -}}{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/* The serving certificate: the existing Secret's when present (no rotation on upgrade),
     else a new CA and certificate. Rendered once and shared through .Values. */}}
{{- define "injector.tls" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace "proxy-injector-tls" -}}
{{- if and $existing $existing.data (index $existing.data "ca.crt") -}}
{{- toJson (dict "ca" (index $existing.data "ca.crt") "crt" (index $existing.data "tls.crt") "key" (index $existing.data "tls.key")) -}}
{{- else -}}
{{- $days := int (div .Values.injector.certValidityHours 24) -}}
{{- $ca := genCA (printf "proxy-injector.%s webhook CA" .Release.Namespace) $days -}}
{{- $names := include "injector.dnsNames" . | fromJsonArray -}}
{{- $cert := genSignedCert (printf "proxy-injector.%s.svc" .Release.Namespace) nil $names $days $ca -}}
{{- toJson (dict "ca" ($ca.Cert | b64enc) "crt" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc)) -}}
{{- end -}}
{{- end -}}

{{- define "injector.registration" -}}
{{- $tls := .tls -}}
{{- $root := .root -}}
{{- $injectorValues := $root.Values.proxyInjector | default dict -}}
{{- $meshRequired := (($injectorValues.policy | default dict).meshRequired | default dict).mode | default "off" | toString -}}
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: {{ .name }}
  labels:
    linkerd.io/control-plane-component: proxy-injector
    linkerd.io/control-plane-ns: {{ include "injector.cpns" $root }}
  {{- if $root.Values.injector.certManager }}
  annotations:
    cert-manager.io/inject-ca-from: {{ $root.Release.Namespace }}/proxy-injector
  {{- end }}
webhooks:
- name: linkerd-proxy-injector.linkerd.io
  namespaceSelector:
    matchExpressions:
    {{- if .retired }}
    - key: proxy-injector.linkerd.io/retired
      operator: In
      values: ["never"]
    {{- else }}
    {{- include "injector.namespaceExpressions" . | nindent 4 }}
    {{- end }}
  {{- include "injector.objectSelector" . | nindent 2 }}
  matchConditions:
  - name: not-already-injected
    expression: "object.kind != 'Pod' || !(object.spec.containers.exists(c, c.name == 'linkerd-proxy') || (has(object.spec.initContainers) && object.spec.initContainers.exists(c, c.name == 'linkerd-proxy')))"
  {{- if not (has $meshRequired (list "audit" "enforce")) }}
  - name: not-opted-out
    expression: "object.kind != 'Pod' || !has(object.metadata.annotations) || !('linkerd.io/inject' in object.metadata.annotations) || object.metadata.annotations['linkerd.io/inject'] != 'disabled'"
  {{- end }}
  {{- include "injector.clientConfig" . | nindent 2 }}
  failurePolicy: {{ if include "injector.deny" $root }}Fail{{ else }}Ignore{{ end }}
  admissionReviewVersions: ["v1", "v1beta1"]
  rules:
  - operations: ["CREATE"]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["pods", "services"]
    scope: Namespaced
  sideEffects: NoneOnDryRun
  timeoutSeconds: {{ $injectorValues.timeoutSeconds | default 10 | int | max 1 | min 30 }}
  reinvocationPolicy: IfNeeded
{{- if not .retired }}
{{- /* Advice at apply time: never mutates, always fails open, short timeout (also with ha). */}}
- name: advice.proxy-injector.linkerd.io
  namespaceSelector:
    matchExpressions:
    {{- include "injector.namespaceExpressions" . | nindent 4 }}
  {{- include "injector.objectSelector" . | nindent 2 }}
  {{- include "injector.clientConfig" . | nindent 2 }}
  failurePolicy: Ignore
  admissionReviewVersions: ["v1", "v1beta1"]
  rules:
  - operations: ["CREATE", "UPDATE"]
    apiGroups: ["apps"]
    apiVersions: ["v1"]
    resources: ["deployments", "statefulsets", "daemonsets", "replicasets"]
    scope: Namespaced
  - operations: ["CREATE", "UPDATE"]
    apiGroups: ["batch"]
    apiVersions: ["v1"]
    resources: ["jobs", "cronjobs"]
    scope: Namespaced
  - operations: ["UPDATE"]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["services"]
    scope: Namespaced
  - operations: ["CREATE", "UPDATE"]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["namespaces"]
    scope: Cluster
  sideEffects: None
  timeoutSeconds: 2
  reinvocationPolicy: Never
{{- end }}
{{- end -}}

{{- define "injector.namespaceExpressions" -}}
- key: config.linkerd.io/admission-webhooks
  operator: NotIn
  values: ["disabled"]
- key: kubernetes.io/metadata.name
  operator: NotIn
  values: ["kube-system", "cert-manager"]
{{- end -}}

{{- define "injector.objectSelector" -}}
objectSelector:
  matchExpressions:
  - key: linkerd.io/control-plane-component
    operator: DoesNotExist
  - key: linkerd.io/cni-resource
    operator: DoesNotExist
{{- end -}}

{{- define "injector.clientConfig" -}}
{{- $tls := .tls -}}
{{- $root := .root -}}
clientConfig:
  {{- if $root.Values.injector.webhookUrl }}
  url: {{ $root.Values.injector.webhookUrl }}
  {{- else }}
  service:
    name: proxy-injector
    namespace: {{ $root.Release.Namespace }}
    path: /
  {{- end }}
  {{- if $tls }}
  caBundle: {{ $tls.ca }}
  {{- end }}
{{- end -}}

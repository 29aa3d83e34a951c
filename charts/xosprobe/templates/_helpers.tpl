{{/*
Labels on every object's metadata. With helmLabels off (how manifests/base is
rendered) only the selector labels remain, so kustomize and Helm installs
select the same pods.
*/}}
{{- define "xosprobe.labels" -}}
app.kubernetes.io/name: xosprobe
{{- if .root.Values.helmLabels }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* The image reference of one image suffix (linux, windows, windows-ltsc2022). */}}
{{- define "xosprobe.image" -}}
{{- $img := .root.Values.image -}}
{{- $repo := trimSuffix "/" (printf "%s/%s" $img.registry $img.repository | trimPrefix "/") -}}
{{- $digest := get ($img.digests | default dict) .suffix -}}
{{- if $digest -}}
{{- if not (hasPrefix "sha256:" $digest) }}{{ fail (printf "image.digests.%s: %q is not a sha256:... digest" .suffix $digest) }}{{ end -}}
{{ $repo }}@{{ $digest }}
{{- else -}}
{{ $repo }}:{{ $img.tag | default .root.Chart.AppVersion }}-{{ .suffix }}
{{- end -}}
{{- end }}

{{/* Pull policy: as set, else IfNotPresent for a digest, Always for a (mutable) tag. */}}
{{- define "xosprobe.pullPolicy" -}}
{{- if .root.Values.image.pullPolicy -}}
{{ .root.Values.image.pullPolicy }}
{{- else if get (.root.Values.image.digests | default dict) .suffix -}}
IfNotPresent
{{- else -}}
Always
{{- end -}}
{{- end }}

{{/* The aggregator's in-cluster URL: a FQDN, since Windows pods search a single DNS suffix. */}}
{{- define "xosprobe.aggregatorHost" -}}
xosprobe-aggregator.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}
{{- end }}

{{/* Pull secrets, when any. */}}
{{- define "xosprobe.pullSecrets" -}}
{{- with .Values.image.pullSecrets -}}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* The agent container's args, on one OS: its token path differs. */}}
{{- define "xosprobe.agentArgs" -}}
- agent
# The FQDN: Windows pods search only their first DNS suffix, so the short
# svc.ns.svc form does not resolve there.
- --aggregator-url=http://{{ include "xosprobe.aggregatorHost" .root }}:9446
- --token-file={{ .tokenFile }}
- --cluster-domain={{ .root.Values.clusterDomain }}
- --interval={{ .root.Values.probe.interval }}
- --timeout={{ .root.Values.probe.timeout }}
- --log-format={{ .root.Values.agent.logFormat }}
{{- with .root.Values.agent.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* What an agent container shares on both OSes: downward API, ports, probes. */}}
{{- define "xosprobe.agentPorts" -}}
env:
  - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
  - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
  - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
  - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
ports:
  - {name: probe-http, containerPort: 9440}
  - {name: probe-tcp, containerPort: 9441}
  - {name: netpol-allow, containerPort: 9442}
  - {name: netpol-deny, containerPort: 9443}
  - {name: metrics, containerPort: 9445}
readinessProbe:
  httpGet: {path: /readyz, port: metrics}
  periodSeconds: 5
livenessProbe:
  httpGet: {path: /healthz, port: metrics}
  periodSeconds: 20
  failureThreshold: 3
{{- end }}

{{/* The audience-bound token volume of agents and aggregator replicas. */}}
{{- define "xosprobe.tokenVolume" -}}
- name: {{ .name }}
  projected:
    sources:
      - serviceAccountToken: {audience: xosprobe-aggregator, expirationSeconds: 3600, path: token}
{{- end }}

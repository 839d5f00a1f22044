{{/*
Names, labels and the derived settings every template shares.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "registry-prober.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of every resource: fullnameOverride, else "<release>-<name>" (just the release
name when it already contains the name). At most 52 characters: a StatefulSet adds an 11-char
controller-revision-hash label value to its pod names.
*/}}
{{- define "registry-prober.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart>-<version>", the helm.sh/chart label. */}}
{{- define "registry-prober.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "registry-prober.labels" -}}
helm.sh/chart: {{ include "registry-prober.chart" . }}
{{ include "registry-prober.selectorLabels" . }}
app.kubernetes.io/version: {{ include "registry-prober.version" . | quote }}
app.kubernetes.io/component: prober
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The labels pods are selected by: never change them in an upgrade (selectors are immutable). */}}
{{- define "registry-prober.selectorLabels" -}}
app.kubernetes.io/name: {{ include "registry-prober.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount's name. */}}
{{- define "registry-prober.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "registry-prober.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The prober version: the image tag, else the appVersion. A label value: at most 63 chars. */}}
{{- define "registry-prober.version" -}}
{{- default .Chart.AppVersion .Values.image.tag | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image reference: repository@digest, else repository:tag. */}}
{{- define "registry-prober.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The name of the Secret holding the credential files, or "" when there is none. */}}
{{- define "registry-prober.credentialsSecret" -}}
{{- if and .Values.credentials.existingSecret .Values.credentials.files }}
{{- fail "credentials: set existingSecret (a Secret you manage) or files (a Secret the chart creates), not both" }}
{{- end }}
{{- if .Values.credentials.existingSecret }}
{{- .Values.credentials.existingSecret }}
{{- else if .Values.credentials.files }}
{{- include "registry-prober.fullname" . }}-credentials
{{- end }}
{{- end }}

{{/*
The prober's `instance`: the config's own, else derived from the location (else nothing: the
prober's default). The derivation keeps [a-z0-9] of the lowercased location; when that is not
the location itself or is longer than 16, it takes 8 of those characters plus 8 hex digits of
sha256(location), so two locations never map to one instance.
*/}}
{{- define "registry-prober.instance" -}}
{{- if hasKey .Values.config "instance" }}
{{- .Values.config.instance }}
{{- else if .Values.location }}
{{- $clean := regexReplaceAll "[^a-z0-9]" (lower .Values.location) "" }}
{{- if and (eq $clean .Values.location) (le (len $clean) 16) }}
{{- $clean }}
{{- else }}
{{- printf "%s%s" (trunc 8 $clean) (trunc 8 (sha256sum .Values.location)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The shard of a target: the first 4 bytes of sha256(name) as a big-endian number, mod the shard
count. Called with (dict "name" NAME "shards" N); renders the shard number.
*/}}
{{- define "registry-prober.shardOf" -}}
{{- $digits := dict "0" 0 "1" 1 "2" 2 "3" 3 "4" 4 "5" 5 "6" 6 "7" 7 "8" 8 "9" 9 "a" 10 "b" 11 "c" 12 "d" 13 "e" 14 "f" 15 }}
{{- $n := 0 }}
{{- range $c := splitList "" (trunc 8 (sha256sum .name)) }}
{{- $n = add (mul $n 16) (get $digits $c) }}
{{- end }}
{{- mod $n .shards }}
{{- end }}

{{/*
The rendered config files as a dict: file name -> YAML text. One "config.yml", or with sharding
one "<fullname>-<i>.yml" per shard (the pod's own name: StatefulSet pod i is "<fullname>-i").
*/}}
{{- define "registry-prober.configFiles" -}}
{{- $config := deepCopy .Values.config }}
{{- $_ := set $config "listen" "0.0.0.0:9115" }}
{{- $instance := include "registry-prober.instance" . }}
{{- if $instance }}
{{- $_ := set $config "instance" $instance }}
{{- end }}
{{- $files := dict }}
{{- if .Values.sharding.enabled }}
{{- $fullname := include "registry-prober.fullname" . }}
{{- $shards := int .Values.sharding.shards }}
{{- range $i := until $shards }}
{{- $mine := list }}
{{- range $t := $config.targets }}
{{- if eq (include "registry-prober.shardOf" (dict "name" $t.name "shards" $shards)) (toString $i) }}
{{- $mine = append $mine $t }}
{{- end }}
{{- end }}
{{- if not $mine }}
{{- fail (printf "sharding: shard %d of %d gets no target (a target goes to the shard sha256(name) picks); use fewer shards than the %d targets, or rename one" $i $shards (len $config.targets)) }}
{{- end }}
{{- $shard := deepCopy $config }}
{{- $_ := set $shard "targets" $mine }}
{{- $_ := set $files (printf "%s-%d.yml" $fullname $i) (toYaml $shard) }}
{{- end }}
{{- else }}
{{- $_ := set $files "config.yml" (toYaml $config) }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{/* The selector the alert rules are scoped with. */}}
{{- define "registry-prober.ruleSelector" -}}
{{- if .Values.prometheusRule.selector }}
{{- .Values.prometheusRule.selector }}
{{- else if .Values.location }}
{{- printf "job=%q, location=%q" (include "registry-prober.name" .) .Values.location }}
{{- else }}
{{- printf "job=%q" (include "registry-prober.name" .) }}
{{- end }}
{{- end }}

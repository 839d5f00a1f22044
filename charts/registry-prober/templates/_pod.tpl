{{/*
The pod template of the Deployment (one pod) and of the sharded StatefulSet (one pod a shard).
*/}}
{{- define "registry-prober.podTemplate" -}}
metadata:
  labels:
    {{- include "registry-prober.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $checksums := and .Values.credentials.files (not .Values.credentials.existingSecret) }}
  {{- if or .Values.rollOnConfigChange $checksums .Values.podAnnotations }}
  annotations:
    {{- if .Values.rollOnConfigChange }}
    checksum/config: {{ include "registry-prober.configFiles" . | sha256sum }}
    {{- end }}
    {{- if $checksums }}
    checksum/credentials: {{ toYaml .Values.credentials.files | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
spec:
  serviceAccountName: {{ include "registry-prober.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.initContainers }}
  initContainers:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: registry-prober
      image: {{ include "registry-prober.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - run
        - --config
        {{- if .Values.sharding.enabled }}
        {{- /* Each pod reads the config named after it: Kubernetes expands $(POD_NAME). */}}
        - /etc/registry-prober/config/$(POD_NAME).yml
        {{- else }}
        - /etc/registry-prober/config/config.yml
        {{- end }}
        - --log-format
        - {{ .Values.logFormat }}
      {{- if or .Values.sharding.enabled .Values.logLevel .Values.env }}
      env:
        {{- if .Values.sharding.enabled }}
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        {{- with .Values.logLevel }}
        - name: RUST_LOG
          value: {{ . | quote }}
        {{- end }}
        {{- with .Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- with .Values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: http
          containerPort: 9115
          protocol: TCP
      livenessProbe:
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/registry-prober/config
          readOnly: true
        {{- if include "registry-prober.credentialsSecret" . }}
        - name: credentials
          mountPath: {{ .Values.credentials.mountPath }}
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "registry-prober.fullname" . }}
    {{- with include "registry-prober.credentialsSecret" . }}
    - name: credentials
      secret:
        secretName: {{ . }}
        defaultMode: 0440
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{- define "flexinfra.labels" -}}
app.kubernetes.io/name: flexinfra
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

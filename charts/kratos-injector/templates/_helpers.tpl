{{/* The fixed name of every object: RBAC, the policy and the flags refer to it. */}}
{{- define "ki.name" -}}kratos-injector{{- end -}}

{{- define "ki.selectorLabels" -}}
app.kubernetes.io/name: kratos-injector
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "ki.labels" -}}
app.kubernetes.io/name: kratos-injector
{{- if not .Values.plainManifests }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}
{{- end -}}

{{/* repository:tag[@digest] */}}
{{- define "ki.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}:{{ $tag }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{- define "ki.injectorImage" -}}
{{- with .Values.injectorImage -}}
{{- if .repository -}}
{{ .repository }}{{ if .tag }}:{{ .tag }}{{ end }}{{ if .digest }}@{{ .digest }}{{ end }}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ki.tlsMode" -}}
{{- if not (has .Values.tls.mode (list "self-signed" "cert-manager")) -}}
{{- fail (printf "tls.mode %q: want self-signed or cert-manager" .Values.tls.mode) -}}
{{- end -}}
{{- .Values.tls.mode -}}
{{- end -}}

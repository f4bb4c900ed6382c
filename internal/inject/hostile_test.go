package inject

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/kratos-injector/kratos-injector/internal/config"
)

// urlAnnotations are the annotations whose values are URLs (or lists of them).
var urlAnnotations = []string{AnnotationPublicURL, AnnotationUIURL, AnnotationReturnURL,
	AnnotationAllowedReturnURLs, AnnotationCORSOrigins, AnnotationHydraAdminURL}

// A URL with credentials in an annotation is refused, and no message about it (the denial, which
// the webhook logs and the ReplicaSet's events repeat) holds its password, however the URL is
// broken.
func TestURLProblemsRedactCredentials(t *testing.T) {
	// Every annotation whose example is a URL is in the table.
	for _, d := range Annotations {
		if u, err := url.Parse(strings.Split(d.Example, ",")[0]); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
			if !contains(urlAnnotations, d.Name) {
				t.Errorf("%s takes URLs but is not in urlAnnotations", d.Name)
			}
		}
	}
	const pw = "SECRETPW"
	long := strings.Repeat(pw, 20)
	for _, v := range []string{
		"https://user:" + pw + "@hydra.example.com:4445/",
		"https://user:" + pw + "@hydra.example.com/path?q=1#f",
		"http://user:" + pw + "@10.0.0.1/",
		"https://user:" + pw + "%zz@hydra.example.com:4445/", // does not parse
		"https://user:" + pw + "/x@hydra.example.com/",       // does not parse either: port "SECRETPW/x"
		// Parses, as host "user" port 12345 and a path with an '@': accepted where a path may
		// hold one, refused by cors-origins (an origin has no path) with a message.
		"https://user:12345/" + pw + "@hydra.example.com/",
		"https://user:" + pw + "@hydra.example.com:44x5/",
		"https://user:" + long + "@hydra.example.com/", // longer than a quote shows
		"https://user:" + pw + "@*.example.com/",
		"https://user:" + pw + "@hydra example.com/",
		"user:" + pw + "@hydra.example.com:4445", // no scheme: parses as scheme "user"
		"//user:" + pw + "@hydra.example.com/",
		"ftp://user:" + pw + "@hydra.example.com/",
		"https://" + pw + "@hydra.example.com/", // a token as the user name
		"https://ok.example.com, https://user:" + pw + "@app.example.com",
	} {
		for _, key := range urlAnnotations {
			t.Run(key+"="+v, func(t *testing.T) {
				_, err := ParseAnnotations(map[string]string{key: v}, "")
				var inv *InvalidError
				if err == nil && strings.HasPrefix(v, "https://user:12345/") && key != AnnotationCORSOrigins {
					return // a valid URL: no message to leak from
				}
				if !errors.As(err, &inv) {
					t.Fatalf("accepted: %v", err)
				}
				for _, p := range inv.Problems {
					t.Log(p)
					if strings.Contains(p.Message, pw) {
						t.Errorf("problem repeats the password: %s", p)
					}
				}
				// The denial as the webhook answers it.
				_, err = Inject(labelledPod(map[string]string{key: v}), testOptions)
				if err == nil || strings.Contains(err.Error(), pw) {
					t.Errorf("denial repeats the password: %v", err)
				}
			})
		}
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// The kubelet expands $(VAR) in a container's command and args ($$ is a literal $): the render
// container must receive exactly the spec that admission validated, whatever '$' the
// annotations hold, and no injected container may carry an expandable reference.
func TestArgsSurviveKubeletExpansion(t *testing.T) {
	annotations := map[string]string{
		AnnotationPublicURL:         "https://$(KUBERNETES_SERVICE_HOST)/",
		AnnotationUIURL:             "https://login.example.com/$$/$(HOME)/$(",
		AnnotationReturnURL:         "https://app.example.com/a$b$$c$",
		AnnotationAllowedReturnURLs: "https://app.example.com/$(KUBERNETES_SERVICE_HOST)$,https://app.example.com/$$$(X)",
		AnnotationSender:            `"Cash $$ $(HOME) $( $" <login@example.com>`,
		AnnotationDatabaseSecret:    "db",
	}
	res, err := Inject(labelledPod(annotations), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	want, err := res.Spec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// The variables a kubelet could resolve: the container's env and the service links.
	vars := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "HOME": "/root", "X": "x"}
	for _, c := range injected(res.Pod) {
		env := map[string]string{}
		for k, v := range vars {
			env[k] = v
		}
		for _, e := range c.Env {
			env[e.Name] = kubeletExpand(e.Value, env)
		}
		var got []string
		for _, a := range append(append([]string{}, c.Command...), c.Args...) {
			got = append(got, kubeletExpand(a, env))
		}
		if c.Name != ContainerConfig {
			if d := cmp.Diff(append(append([]string{}, c.Command...), c.Args...), got); d != "" {
				t.Errorf("container %s: the kubelet changes its command or args:\n%s", c.Name, d)
			}
			continue
		}
		if !contains(got, "--spec="+want) {
			t.Errorf("render container receives\n%q\nwant --spec=%s", got, want)
		}
		spec, err := config.UnmarshalSpec(strings.TrimPrefix(got[len(c.Command)], "--spec="))
		if err != nil {
			t.Fatal(err)
		}
		if spec.PublicURL != annotations[AnnotationPublicURL] || spec.SenderName != "Cash $$ $(HOME) $( $" {
			t.Errorf("render sees public URL %q, sender %q", spec.PublicURL, spec.SenderName)
		}
	}
}

// expandedArgs are c's args as the kubelet passes them, with no variable resolved.
func expandedArgs(c corev1.Container) []string {
	var out []string
	for _, a := range c.Args {
		out = append(out, kubeletExpand(a, nil))
	}
	return out
}

// injected returns the containers Inject added.
func injected(p *corev1.Pod) []corev1.Container {
	var out []corev1.Container
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		if strings.HasPrefix(c.Name, "kratos") {
			out = append(out, c)
		}
	}
	return out
}

func TestKubeletExpand(t *testing.T) {
	env := map[string]string{"A": "a"}
	for in, want := range map[string]string{
		"$(A)": "a", "$(B)": "$(B)", "$$(A)": "$(A)", "$$$(A)": "$a", "$": "$", "x$": "x$", "$$": "$",
		"$(": "$(", "$(A": "$(A", "$x": "$x", "$é": "$é", "$$$$": "$$", "a$(A)$(A)b": "aaab",
	} {
		if got := kubeletExpand(in, env); got != want {
			t.Errorf("expand %q = %q, want %q", in, got, want)
		}
	}
}

// kubeletExpand is Kubernetes's expansion of $(VAR) references in a container's command, args and
// env values, as the kubelet applies it with the container's environment as mapping (unresolved
// references stay as written). k8s.io/kubernetes is not importable; this replicates
// k8s.io/kubernetes/third_party/forked/golang/expansion (Expand, MappingFuncFor) of v1.37.
func kubeletExpand(input string, vars map[string]string) string {
	mapping := func(name string) string {
		if v, ok := vars[name]; ok {
			return v
		}
		return "$(" + name + ")"
	}
	var buf strings.Builder
	checkpoint := 0
	for cursor := 0; cursor < len(input); cursor++ {
		if input[cursor] == '$' && cursor+1 < len(input) {
			buf.WriteString(input[checkpoint:cursor])
			read, isVar, advance := tryReadVariableName(input[cursor+1:])
			if isVar {
				buf.WriteString(mapping(read))
			} else {
				buf.WriteString(read)
			}
			cursor += advance
			checkpoint = cursor + 1
		}
	}
	return buf.String() + input[checkpoint:]
}

// tryReadVariableName is the expansion package's: what follows a '$', whether it is a variable
// name, and how many bytes it consumed.
func tryReadVariableName(input string) (string, bool, int) {
	r, size := utf8.DecodeRuneInString(input)
	switch r {
	case '$': // an escaped operator
		return input[0:size], false, size
	case '(':
		for i := 1; i < len(input); i++ {
			if input[i] == ')' {
				return input[1:i], true, i + 1
			}
		}
		return "$(", false, 1 // an incomplete reference
	default:
		return "$" + string(r), false, size
	}
}

// No injected container copies its log into its termination message: the pod's status is
// readable by whoever may get pods, and Kratos's errors can quote its config, secrets included.
// The render container writes its own secret-free line (cmd/webhook's TestRenderTerminationMessage).
func TestTerminationMessageIsNeverTheLog(t *testing.T) {
	for _, annotations := range []map[string]string{
		{AnnotationMigrate: config.MigrateAuto},
		{AnnotationMigrate: config.MigrateAuto, AnnotationSidecar: config.SidecarContainer},
		{AnnotationMigrate: config.MigrateAuto, AnnotationDatabaseSecret: "pg"},
	} {
		res, err := Inject(labelledPod(annotations), testOptions)
		if err != nil {
			t.Fatal(err)
		}
		cs := injected(res.Pod)
		if len(cs) < 4 {
			t.Fatalf("%d injected containers, want kratos-config, kratos-migrate, kratos, kratos-metrics (and kratos-courier with Postgres)", len(cs))
		}
		for _, c := range cs {
			if c.TerminationMessagePolicy != corev1.TerminationMessageReadFile {
				t.Errorf("%v: container %s has terminationMessagePolicy %q, want File", annotations, c.Name, c.TerminationMessagePolicy)
			}
		}
	}
}

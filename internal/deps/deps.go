package deps
import (
 _ "sigs.k8s.io/controller-runtime/pkg/webhook/admission"
 _ "sigs.k8s.io/controller-runtime/pkg/envtest"
 _ "k8s.io/client-go/tools/portforward"
 _ "k8s.io/client-go/tools/remotecommand"
 _ "k8s.io/cli-runtime/pkg/genericclioptions"
 _ "k8s.io/cli-runtime/pkg/printers"
 _ "github.com/spf13/cobra"
 _ "github.com/ory/kratos-client-go"
 _ "sigs.k8s.io/yaml"
 _ "github.com/google/go-cmp/cmp"
)

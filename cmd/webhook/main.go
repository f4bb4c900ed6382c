// Command webhook is the kratos-injector binary: `webhook serve` runs the mutating admission
// server, `webhook render` is the init container that renders kratos.yaml inside the pod.
package main

import (
	"fmt"
	"os"

	"github.com/kratos-injector/kratos-injector/internal/version"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Printf("webhook %s (Kratos %s)\n", version.Version, version.KratosVersion)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: webhook version")
	os.Exit(2)
}

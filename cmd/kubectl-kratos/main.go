// Command kubectl-kratos is the kubectl plugin: `kubectl kratos ...`.
package main

import (
	"fmt"
	"os"

	"github.com/kratos-injector/kratos-injector/internal/version"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Printf("kubectl-kratos %s (Kratos %s)\n", version.Version, version.KratosVersion)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: kubectl kratos version")
	os.Exit(2)
}

package actions

import "github.com/kratos-injector/kratos-injector/internal/config"

// MigrateCommand is the command that migrates the database of a Kratos whose config is at
// configPath; it runs inside the Kratos container (the admin API has no migration call, and
// Kratos v1.3 has no `migrate status`). The arguments are the injected migrate container's.
func MigrateCommand(configPath string) []string {
	return append([]string{"kratos"}, config.MigrateArgs(configPath)...)
}

package actions

// MigrateCommand is the command that migrates the database of a Kratos whose config is at
// configPath; it runs inside the Kratos container (the admin API has no migration call, and
// Kratos v1.3 has no `migrate status`). -e takes the DSN from the config (or env DSN).
func MigrateCommand(configPath string) []string {
	return []string{"kratos", "migrate", "sql", "-e", "--yes", "-c", configPath}
}

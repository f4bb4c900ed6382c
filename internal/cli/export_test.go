package cli

// RawControls is rawControls, for the external tests.
var RawControls = rawControls

// SetTerminal makes the prompt of confirmFlags see a terminal (or not) until the test ends.
func SetTerminal(t interface{ Cleanup(func()) }, yes bool) {
	old := isTerminal
	isTerminal = func(any) bool { return yes }
	t.Cleanup(func() { isTerminal = old })
}

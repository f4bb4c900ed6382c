package cli

// RawControls is rawControls, for the external tests.
var RawControls = rawControls

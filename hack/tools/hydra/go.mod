module github.com/kratos-injector/kratos-injector/hack/tools/hydra

go 1.23

require github.com/ory/hydra/v2 v2.3.0

// Hydra v2.3.0's own replace line (it does not apply outside its module); its other one points
// at a folder its module zip does not hold, so hydra-client-go comes from the proxy instead.
// Do not `go mod tidy` this module: go.sum starts from Hydra's own go.sum.
replace github.com/gobuffalo/pop/v6 => github.com/ory/pop/v6 v6.2.1-0.20241121111754-e5dfc0f3344b

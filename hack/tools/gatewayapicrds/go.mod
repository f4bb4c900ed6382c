module github.com/kratos-injector/kratos-injector/hack/tools/gatewayapicrds

go 1.26.0

require sigs.k8s.io/gateway-api v1.6.3

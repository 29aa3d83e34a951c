// Package chart tests charts/xosprobe with Helm v4 (built from the Go module
// proxy as this module's tool) and kustomize: helm lint, the chart's values,
// and that the kustomize install (manifests/) is the chart rendered, object
// by object. It is its own module so Helm's dependency graph stays out of
// the main go.mod.
//
//	go test ./...            check
//	go test ./... -update    render manifests/base and copy the chart's files
package chart

//go:build tools

// Package tools pins the helm command the e2e harness builds, so that `go mod tidy` keeps its
// whole dependency graph in go.mod/go.sum.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)

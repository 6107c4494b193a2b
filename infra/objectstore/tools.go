//go:build tools

// Package tools pins SeaweedFS (the S3 object store of the cluster profile) so `go build` can make its `weed` binary:
// a plain `go install` refuses the module because its go.mod has a replace directive.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"

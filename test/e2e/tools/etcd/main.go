// Command etcd is upstream etcd's server entry point, built from the Go module
// proxy: etcd's own main package lives in its root module, which is not
// published with a usable version, so this calls etcdmain like that main does.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

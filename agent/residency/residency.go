// Package residency gives back memory that only the process's start-up used.
//
// Go runs every package's init before main, and the agent links client-go,
// whose init registers every Kubernetes API type: that touches code and type
// data all over the executable, and the kernel maps 64 KiB around every page
// it faults in. An agent that has started holds some 23 MiB of the executable
// resident although its steady state reads about 5 MiB of it (measured with
// /proc/PID/clear_refs; bench/agent-load.sh prints both). The pages are clean
// copies of the file, so dropping the process's mappings of them loses
// nothing: what is used again is faulted back from the page cache.
package residency

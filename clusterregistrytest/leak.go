package clusterregistrytest

import (
	"testing"

	"go.uber.org/goleak"
)

// LeakOptions returns the goleak options for a package whose tests use
// client-go through this library: they ignore what legitimately runs for the
// life of the process, and nothing else. extra options are appended.
//
// What client-go leaves was found by experiment (leak_test.go in this
// package): nothing, once the Syncer has released its clients. Typed,
// dynamic and discovery requests over HTTP/2 to a Server, rebuilds and
// removals, fake clientsets and their watches all end without a trace,
// because ClientBuilder closes a client's idle connections on Release and
// configs with inline certificates start no reload goroutine. The examples
// module's tests found the same for informers stopped with Shutdown and for a
// controller-runtime manager that has stopped. So the options ignore nothing
// of client-go's. They do ignore klog's flush daemon, which klog
// starts once, when file output is configured or StartFlushDaemon is called,
// and which runs until the process exits.
//
// Real leaks that these options deliberately report:
//   - a client made outside the Registry (kubernetes.NewForConfig) whose idle
//     connections are not closed keeps one read loop per connection
//     (golang.org/x/net/http2.(*ClientConn).readLoop, or
//     net/http.(*persistConn).readLoop) until client-go's idle timeout, 90s:
//     close them with k8s.io/apimachinery/pkg/util/net.CloseIdleConnectionsFor;
//   - an informer or a watch that is not stopped.
//
// Certificate files: client-go's transport cache may start a certificate
// rotation goroutine for a config with client certificate and key files,
// which it stops only when the transport is garbage collected (and never
// with its ClientsAllowTLSCacheGC feature off). A one-off experiment with
// client-go v0.37.2 found none started through rest.HTTPClientFor; still,
// give tests inline CAData, CertData and KeyData, as Server.Config does.
// Exec plugins and auth providers were not tried.
func LeakOptions(extra ...goleak.Option) []goleak.Option {
	return append([]goleak.Option{
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	}, extra...)
}

// VerifyTestMain runs the package's tests and then fails the run if any
// goroutine is left, apart from those LeakOptions ignores. Call it from
// TestMain:
//
//	func TestMain(m *testing.M) { clusterregistrytest.VerifyTestMain(m) }
func VerifyTestMain(m *testing.M, extra ...goleak.Option) {
	goleak.VerifyTestMain(m, LeakOptions(extra...)...)
}

// VerifyNone fails t if any goroutine is left, apart from those LeakOptions
// ignores. goleak retries for a while, so goroutines that are on their way
// out (a connection's read loop after its close) do not count.
func VerifyNone(t testing.TB, extra ...goleak.Option) {
	t.Helper()
	goleak.VerifyNone(t, LeakOptions(extra...)...)
}

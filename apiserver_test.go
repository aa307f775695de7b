package clusterregistry_test

import (
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"k8s.io/client-go/rest"
)

// testAPIServer is a local TLS server that answers the few calls the tests
// make of a Kubernetes API server (/version and the namespace list), checks
// bearer tokens, and counts its open connections.
type testAPIServer struct {
	*httptest.Server

	mu     sync.Mutex // protects tokens
	tokens map[string]bool

	open      atomic.Int64 // connections open now
	requests  atomic.Int64
	blackhole atomic.Bool  // accept, then never answer
	readyz    atomic.Int32 // status of /readyz; 0 means 200
	hold      chan struct{}
}

func newTestAPIServer(t testing.TB, tokens ...string) *testAPIServer {
	t.Helper()
	s := &testAPIServer{tokens: map[string]bool{}, hold: make(chan struct{})}
	for _, tok := range tokens {
		s.tokens[tok] = true
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.open.Add(-1)
		}
	}
	s.StartTLS()
	t.Cleanup(func() {
		close(s.hold)
		s.Close()
	})
	return s
}

func (s *testAPIServer) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if s.blackhole.Load() {
		select {
		case <-r.Context().Done():
		case <-s.hold:
		}
		panic(http.ErrAbortHandler) // never an answer, not even an empty 200
	}
	s.mu.Lock()
	ok := s.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}`))
		return
	}
	switch r.URL.Path {
	case "/readyz":
		code := int(s.readyz.Load())
		if code == 0 {
			code = http.StatusOK
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte("[+]etcd ok\nreadyz check"))
	case "/version":
		_ = json.NewEncoder(w).Encode(map[string]string{"major": "1", "minor": "37", "gitVersion": "v1.37.2-test"})
	case "/api/v1/namespaces":
		_, _ = w.Write([]byte(`{"kind":"NamespaceList","apiVersion":"v1","metadata":{},"items":[{"metadata":{"name":"default"}}]}`))
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`))
	}
}

// config returns a rest config for the server with token, trusting its CA
// inline (a CA file would start client-go's reload goroutine).
func (s *testAPIServer) config(token string) *rest.Config {
	cert := s.Certificate()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	return &rest.Config{
		Host:            s.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(entries)
}

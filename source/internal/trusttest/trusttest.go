// Package trusttest holds what the sources' tests of trust policies share: a
// TLS API server whose token only an exec plugin knows, kubeconfigs that ask
// the service to run a command or read a key file, and a Syncer with the
// library's ClientBuilder to drive them, so that an accepted exec plugin
// really runs; and the small tools of tests that a source must not block
// or leak through: named pipes, bounded waits, a log recorder.
package trusttest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	fakeclock "k8s.io/utils/clock/testing"

	"github.com/clusterregistry/clusterregistry"
	"github.com/clusterregistry/clusterregistry/trust"
)

// Server is an HTTPS API server that answers GET /version to requests that
// carry its token. It stops when the test ends.
type Server struct {
	URL string
	// CA is the server's certificate, PEM.
	CA []byte
	// Token is the bearer token it accepts, which ExecKubeconfig's plugin
	// prints.
	Token string

	authorized atomic.Int64
}

// NewServer starts a Server and closes it when the test ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s := &Server{Token: "exec-token-" + strings.ReplaceAll(t.Name(), "/", "-")}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+s.Token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/version" {
			http.NotFound(w, r)
			return
		}
		s.authorized.Add(1)
		fmt.Fprint(w, `{"major":"1","minor":"37","gitVersion":"v1.37.2"}`)
	}))
	srv.Config.SetKeepAlivesEnabled(false) // no idle connection outlives a request
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	s.CA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return s
}

// Authorized counts the requests that carried the token.
func (s *Server) Authorized() int64 { return s.authorized.Load() }

// script is the exec plugin's shell script: it creates the file named by
// $MARKER and prints an ExecCredential with s's token.
func (s *Server) script() string {
	cred := fmt.Sprintf(`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":%q}}`, s.Token)
	return fmt.Sprintf(`touch "$MARKER" && printf '%%s' '%s'`, cred)
}

// ArgoCDConfig returns the config key of an Argo CD cluster Secret for s:
// its CA, and the exec plugin of ExecKubeconfig.
func ArgoCDConfig(s *Server, marker string) string {
	cfg := map[string]any{
		"tlsClientConfig": map[string]any{"caData": s.CA},
		"execProviderConfig": map[string]any{
			"command":    "/bin/sh",
			"args":       []string{"-c", s.script()},
			"env":        map[string]string{"MARKER": marker},
			"apiVersion": "client.authentication.k8s.io/v1",
		},
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		panic(err)
	}
	return string(data)
}

// ExecKubeconfig returns a kubeconfig whose one context, "x", reaches s with
// an exec plugin: /bin/sh creates the file marker, then prints s's token.
// Only a source that accepts exec plugins lets the build reach s; the marker
// shows whether the command ran.
func ExecKubeconfig(s *Server, marker string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: x
clusters:
- name: c
  cluster:
    server: %q
    certificate-authority-data: %s
contexts:
- name: x
  context: {cluster: c, user: u}
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: /bin/sh
      args: ["-c", %q]
      env: [{name: MARKER, value: %q}]
      interactiveMode: Never
`, s.URL, base64.StdEncoding.EncodeToString(s.CA), s.script(), marker)
}

// KeyFileKubeconfig returns a kubeconfig whose one context, "x", has an
// inline client certificate and a client key read from the file keyFile.
func KeyFileKubeconfig(server, keyFile string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: x
clusters:
- name: c
  cluster: {server: %q}
contexts:
- name: x
  context: {cluster: c, user: u}
users:
- name: u
  user:
    client-certificate-data: %s
    client-key: %q
`, server, base64.StdEncoding.EncodeToString([]byte("not-a-real-certificate")), keyFile)
}

// Marker returns the path of a marker file that does not exist yet.
func Marker(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "exec-ran")
}

// Exists reports whether the file at path exists.
func Exists(t testing.TB, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err == nil {
		return true
	}
	require.ErrorIs(t, err, os.ErrNotExist)
	return false
}

// RunSyncer runs a Syncer over src with clusterregistry.ClientBuilder until
// the test ends, and returns its Registry after the first sync. The Syncer's
// clock never moves, so it syncs again only when src reports a change.
func RunSyncer(t testing.TB, src clusterregistry.ClusterSource) *clusterregistry.Registry[*clusterregistry.Client] {
	t.Helper()
	s, err := clusterregistry.NewSyncer(src, clusterregistry.ClientBuilder{},
		clusterregistry.WithClock(fakeclock.NewFakeClock(time.Unix(1_000_000, 0))))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	require.NoError(t, s.WaitForFirstSync(ctx))
	return s.Registry()
}

// RequireRefused fails t unless err is a *clusterregistry.FieldError at
// location, naming field, that wraps trust.ErrRefused.
func RequireRefused(t testing.TB, err error, location, field string) {
	t.Helper()
	var fe *clusterregistry.FieldError
	require.ErrorAs(t, err, &fe)
	require.ErrorIs(t, err, trust.ErrRefused)
	require.Equal(t, location, fe.Location)
	require.Equal(t, field, fe.Field)
}

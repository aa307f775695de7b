package clusterregistrytest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"

	"github.com/clusterregistry/clusterregistry"
)

// Server is a small, local Kubernetes API server for tests: an HTTPS server
// on 127.0.0.1 (httptest, HTTP/2 enabled) that checks a bearer token and
// serves
//
//	GET /version
//	GET /api, /api/v1, /apis                        (discovery)
//	GET /api/v1/namespaces, /api/v1/namespaces/{ns}
//	GET /api/v1/pods, /api/v1/namespaces/{ns}/pods
//
// from the objects given to Add. Everything else is 404. It can be made slow
// (SetDelay), failing (Fail: 500, 401 or any status) or silent (BlackHole),
// and healed again. Its Config carries the CA inline (CAData), so clients
// built from it start no certificate-reload goroutine, and it works with the
// library's ClientBuilder unchanged.
//
// A Server starts in NewServer and stops in the test's cleanup. All methods
// are safe for concurrent use.
type Server struct {
	t      testing.TB
	srv    *httptest.Server
	caData []byte

	requests atomic.Int64
	conns    atomic.Int64 // client connections open now

	mu         sync.Mutex // protects the fields below
	token      string
	version    version.Info
	status     int           // non-zero: answer every request with it
	delay      time.Duration // wait before answering
	hole       chan struct{} // non-nil while black-holed; closed by Heal
	closed     chan struct{} // closed by Close: ends every wait
	namespaces map[string]corev1.Namespace
	pods       map[string]corev1.Pod // by namespace/name
}

// NewServer starts a Server with a random token and the namespace "default",
// and closes it when the test ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:          t,
		token:      randomToken(),
		version:    ServerVersion,
		closed:     make(chan struct{}),
		namespaces: make(map[string]corev1.Namespace),
		pods:       make(map[string]corev1.Pod),
	}
	s.addNamespaceLocked(corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}})

	s.srv = httptest.NewUnstartedServer(s.routes())
	s.srv.EnableHTTP2 = true // as real API servers, and client-go, prefer
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.conns.Add(-1)
		}
	}
	s.srv.StartTLS()
	s.caData = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
	t.Cleanup(s.Close)
	return s
}

// ServerVersion is what a Server answers on /version unless SetVersion says
// otherwise.
var ServerVersion = version.Info{
	Major:      "1",
	Minor:      "37",
	GitVersion: "v1.37.0-clusterregistrytest",
	Platform:   runtime.GOOS + "/" + runtime.GOARCH,
	GoVersion:  runtime.Version(),
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// URL returns the server's address, https://127.0.0.1:PORT.
func (s *Server) URL() string { return s.srv.URL }

// CAData returns the PEM of the CA that signed the server's certificate.
func (s *Server) CAData() []byte { return slices.Clone(s.caData) }

// Token returns the bearer token the server accepts.
func (s *Server) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// SetToken makes token the only one the server accepts; requests with any
// other get 401 Unauthorized.
func (s *Server) SetToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
}

// Config returns a new client config for the server: its URL, its CA inline
// and the current token.
func (s *Server) Config() *rest.Config {
	return &rest.Config{
		Host:            s.srv.URL,
		BearerToken:     s.Token(),
		TLSClientConfig: rest.TLSClientConfig{CAData: s.CAData()},
	}
}

// Cluster returns a description of the server as a cluster called name.
func (s *Server) Cluster(name string) clusterregistry.Cluster {
	return clusterregistry.Cluster{Name: name, Config: s.Config()}
}

// SetVersion sets what the server answers on /version.
func (s *Server) SetVersion(v version.Info) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version = v
}

// Add stores Namespaces and Pods (values or pointers), replacing any of the
// same name. A Pod's namespace is added too if missing. Add fails the test for
// any other kind of object; call it from the test's goroutine.
func (s *Server) Add(objs ...kruntime.Object) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Namespace:
			s.addNamespaceLocked(*o.DeepCopy())
		case *corev1.Pod:
			p := *o.DeepCopy()
			if p.Namespace == "" {
				p.Namespace = "default"
			}
			if _, ok := s.namespaces[p.Namespace]; !ok {
				s.addNamespaceLocked(corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.Namespace}})
			}
			p.TypeMeta = metav1.TypeMeta{}
			s.pods[p.Namespace+"/"+p.Name] = p
		default:
			s.t.Fatalf("clusterregistrytest: Server.Add: %T is not served; only *v1.Namespace and *v1.Pod", obj)
		}
	}
}

func (s *Server) addNamespaceLocked(ns corev1.Namespace) {
	ns.TypeMeta = metav1.TypeMeta{}
	if ns.Status.Phase == "" {
		ns.Status.Phase = corev1.NamespaceActive
	}
	s.namespaces[ns.Name] = ns
}

// Fail makes the server answer every request with status (such as 500 or
// 401) and a Kubernetes Status body, until Heal.
func (s *Server) Fail(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

// SetDelay makes the server wait d before it answers each request (or until
// the client gives up), until Heal. Zero removes the delay.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// BlackHole makes the server accept requests and never answer them, until
// Heal, the client gives up, or the server closes: the client sees a timeout,
// as with an API server that hangs. Connections still open; a dial never
// fails.
func (s *Server) BlackHole() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hole == nil {
		s.hole = make(chan struct{})
	}
}

// Heal ends Fail, SetDelay and BlackHole. Requests held by BlackHole are
// answered at once.
func (s *Server) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.delay = 0, 0
	if s.hole != nil {
		close(s.hole)
		s.hole = nil
	}
}

// Requests returns how many requests the server has received.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Connections returns how many client connections are open now, as the
// server sees them: a connection the client closes leaves the count a moment
// later, when the server notices.
func (s *Server) Connections() int64 { return s.conns.Load() }

// Close answers the requests that BlackHole and SetDelay hold, closes every
// connection and stops the server. NewServer's cleanup calls it; calls after
// the first do nothing.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		return
	default:
		close(s.closed)
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// routes returns the server's handler: the faults, the token check, then the
// endpoints.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		v := s.version
		s.mu.Unlock()
		writeObject(w, http.StatusOK, v)
	})
	mux.HandleFunc("GET /api", func(w http.ResponseWriter, r *http.Request) {
		writeObject(w, http.StatusOK, &metav1.APIVersions{
			TypeMeta: metav1.TypeMeta{Kind: "APIVersions"},
			Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{
				{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host},
			},
		})
	})
	mux.HandleFunc("GET /api/v1", func(w http.ResponseWriter, r *http.Request) {
		writeObject(w, http.StatusOK, &metav1.APIResourceList{
			TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
			GroupVersion: "v1",
			APIResources: []metav1.APIResource{
				{Name: "namespaces", Kind: "Namespace", Verbs: metav1.Verbs{"get", "list"}},
				{Name: "pods", Namespaced: true, Kind: "Pod", Verbs: metav1.Verbs{"get", "list"}},
			},
		})
	})
	mux.HandleFunc("GET /apis", func(w http.ResponseWriter, r *http.Request) {
		writeObject(w, http.StatusOK, &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}})
	})
	mux.HandleFunc("GET /api/v1/namespaces", func(w http.ResponseWriter, r *http.Request) {
		list := &corev1.NamespaceList{TypeMeta: metav1.TypeMeta{Kind: "NamespaceList", APIVersion: "v1"}}
		s.mu.Lock()
		for _, ns := range s.namespaces {
			list.Items = append(list.Items, ns)
		}
		s.mu.Unlock()
		slices.SortFunc(list.Items, func(a, b corev1.Namespace) int { return strings.Compare(a.Name, b.Name) })
		writeObject(w, http.StatusOK, list)
	})
	mux.HandleFunc("GET /api/v1/namespaces/{ns}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		ns, ok := s.namespaces[r.PathValue("ns")]
		s.mu.Unlock()
		if !ok {
			writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound,
				fmt.Sprintf("namespaces %q not found", r.PathValue("ns")))
			return
		}
		ns.TypeMeta = metav1.TypeMeta{Kind: "Namespace", APIVersion: "v1"}
		writeObject(w, http.StatusOK, &ns)
	})
	pods := func(w http.ResponseWriter, r *http.Request) {
		namespace := r.PathValue("ns") // "" for all namespaces
		list := &corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
		s.mu.Lock()
		for _, p := range s.pods {
			if namespace == "" || p.Namespace == namespace {
				list.Items = append(list.Items, p)
			}
		}
		s.mu.Unlock()
		slices.SortFunc(list.Items, func(a, b corev1.Pod) int {
			return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
		})
		writeObject(w, http.StatusOK, list)
	}
	mux.HandleFunc("GET /api/v1/pods", pods)
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods", pods)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource")
	})

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		status, delay, hole, token := s.status, s.delay, s.hole, s.token
		s.mu.Unlock()

		if hole != nil {
			select {
			case <-hole:
			case <-r.Context().Done():
				return
			case <-s.closed:
				return
			}
		}
		if delay > 0 {
			// The server's own latency, not a test waiting on time.
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-r.Context().Done():
			case <-s.closed:
			}
			timer.Stop()
		}
		switch {
		case status != 0:
			writeStatus(w, status, reasonFor(status), "injected failure")
		case r.Header.Get("Authorization") != "Bearer "+token:
			writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")
		default:
			mux.ServeHTTP(w, r)
		}
	})
}

func reasonFor(status int) metav1.StatusReason {
	switch status {
	case http.StatusUnauthorized:
		return metav1.StatusReasonUnauthorized
	case http.StatusForbidden:
		return metav1.StatusReasonForbidden
	case http.StatusNotFound:
		return metav1.StatusReasonNotFound
	case http.StatusTooManyRequests:
		return metav1.StatusReasonTooManyRequests
	case http.StatusServiceUnavailable:
		return metav1.StatusReasonServiceUnavailable
	case http.StatusGatewayTimeout:
		return metav1.StatusReasonTimeout
	}
	return metav1.StatusReasonInternalError
}

func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, message string) {
	writeObject(w, code, &metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  message,
		Reason:   reason,
		Code:     int32(code),
	})
}

func writeObject(w http.ResponseWriter, code int, obj any) {
	b, err := json.Marshal(obj)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

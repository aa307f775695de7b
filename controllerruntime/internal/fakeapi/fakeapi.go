// Package fakeapi is a cheap stand-in for a Kubernetes API server in tests:
// an HTTPS server on 127.0.0.1 that checks a bearer token and serves
// discovery, /version, and list, watch (with or without initial events),
// get, create and update of ConfigMaps from memory. It can be black-holed
// (no answer until healed) and counts its open connections.
package fakeapi

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// Server is a fake API server. Its methods are safe for concurrent use.
type logged struct {
	rv int64
	ev metav1.WatchEvent
}

// maxLog is how many events a Server keeps for watches that start from an
// older resourceVersion.
const maxLog = 100_000

type Server struct {
	srv    *httptest.Server
	caData []byte
	conns  atomic.Int64
	token  atomic.Pointer[string] // the current token; older tokens stay valid (a fake has no revocation)
	tokens sync.Map               // every token issued: string -> struct{}

	mu       sync.Mutex // protects the fields below; held for map operations and channel sends that never block
	rv       int64
	objects  map[string]corev1.ConfigMap // by namespace/name
	watchers map[chan metav1.WatchEvent]struct{}
	log      []logged      // the latest events, for watches that start from a resourceVersion
	hole     chan struct{} // non-nil while black-holed
	closed   chan struct{}
}

// New starts a Server; Close stops it.
func New() *Server {
	s := &Server{
		objects:  make(map[string]corev1.ConfigMap),
		watchers: make(map[chan metav1.WatchEvent]struct{}),
		closed:   make(chan struct{}),
		rv:       1,
	}
	s.RotateToken()
	s.srv = httptest.NewUnstartedServer(s.routes())
	s.srv.EnableHTTP2 = true
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
	return s
}

// RotateToken issues a new token, which Config returns from now on, and
// returns it.
func (s *Server) RotateToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	s.tokens.Store(tok, struct{}{})
	s.token.Store(&tok)
	return tok
}

// Config returns a config for the server with its current token, and the CA
// inline.
func (s *Server) Config() *rest.Config {
	return &rest.Config{Host: s.srv.URL, BearerToken: *s.token.Load(), TLSClientConfig: rest.TLSClientConfig{CAData: s.caData}}
}

// Connections returns the number of client connections open now.
func (s *Server) Connections() int64 { return s.conns.Load() }

// Watchers returns the number of watches open now.
func (s *Server) Watchers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.watchers)
}

// BlackHole makes the server answer nothing until Heal.
func (s *Server) BlackHole() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hole == nil {
		s.hole = make(chan struct{})
	}
}

// Heal undoes BlackHole.
func (s *Server) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hole != nil {
		close(s.hole)
		s.hole = nil
	}
}

// Close ends every request and stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// Apply creates or updates a ConfigMap and tells the watchers.
func (s *Server) Apply(cm *corev1.ConfigMap) *corev1.ConfigMap {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyLocked(cm)
}

func (s *Server) applyLocked(in *corev1.ConfigMap) *corev1.ConfigMap {
	cm := in.DeepCopy()
	key := cm.Namespace + "/" + cm.Name
	typ := watchAdded
	if _, ok := s.objects[key]; ok {
		typ = watchModified
	}
	s.rv++
	cm.ResourceVersion = strconv.FormatInt(s.rv, 10)
	cm.TypeMeta = metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"}
	if cm.UID == "" {
		cm.UID = ktypes.UID("uid-" + hex.EncodeToString([]byte(key)))
	}
	s.objects[key] = *cm
	s.notifyLocked(typ, cm)
	return cm.DeepCopy()
}

// Delete deletes a ConfigMap and tells the watchers.
func (s *Server) Delete(namespace, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := namespace + "/" + name
	cm, ok := s.objects[key]
	if !ok {
		return
	}
	delete(s.objects, key)
	s.rv++
	cm.ResourceVersion = strconv.FormatInt(s.rv, 10)
	s.notifyLocked(watchDeleted, &cm)
}

// Get returns a ConfigMap, or nil.
func (s *Server) Get(namespace, name string) *corev1.ConfigMap {
	s.mu.Lock()
	defer s.mu.Unlock()
	cm, ok := s.objects[namespace+"/"+name]
	if !ok {
		return nil
	}
	return cm.DeepCopy()
}

const (
	watchAdded    = "ADDED"
	watchModified = "MODIFIED"
	watchDeleted  = "DELETED"
	watchBookmark = "BOOKMARK"
)

func (s *Server) notifyLocked(typ string, cm *corev1.ConfigMap) {
	raw, _ := json.Marshal(cm)
	ev := metav1.WatchEvent{Type: typ, Object: runtimeRaw(raw)}
	if len(s.log) >= maxLog {
		s.log = slices.Delete(s.log, 0, len(s.log)/2)
	}
	s.log = append(s.log, logged{rv: s.rv, ev: ev})
	for ch := range s.watchers {
		select {
		case ch <- ev:
		default:
			// A watcher that cannot keep up is closed, as an API server
			// does; its informer re-lists.
			delete(s.watchers, ch)
			close(ch)
		}
	}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"major": "1", "minor": "37", "gitVersion": "v1.37.0-fakeapi"})
	})
	mux.HandleFunc("GET /api", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, &metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}}})
	})
	mux.HandleFunc("GET /apis", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}})
	})
	mux.HandleFunc("GET /api/v1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, &metav1.APIResourceList{
			TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: "v1",
			APIResources: []metav1.APIResource{{Name: "configmaps", Namespaced: true, Kind: "ConfigMap",
				Verbs: metav1.Verbs{"get", "list", "watch", "create", "update"}}},
		})
	})
	mux.HandleFunc("GET /api/v1/configmaps", s.listOrWatch)
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/configmaps", s.listOrWatch)
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/configmaps/{name}", func(w http.ResponseWriter, r *http.Request) {
		cm := s.Get(r.PathValue("ns"), r.PathValue("name"))
		if cm == nil {
			writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("configmaps %q not found", r.PathValue("name")))
			return
		}
		writeJSON(w, http.StatusOK, cm)
	})
	write := func(w http.ResponseWriter, r *http.Request) {
		var cm corev1.ConfigMap
		if err := json.NewDecoder(r.Body).Decode(&cm); err != nil {
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "bad body")
			return
		}
		cm.Namespace = r.PathValue("ns")
		writeJSON(w, http.StatusOK, s.Apply(&cm))
	}
	mux.HandleFunc("POST /api/v1/namespaces/{ns}/configmaps", write)
	mux.HandleFunc("PUT /api/v1/namespaces/{ns}/configmaps/{name}", write)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		hole := s.hole
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
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if _, valid := s.tokens.Load(tok); !ok || !valid {
			writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) listOrWatch(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	s.mu.Lock()
	var items []corev1.ConfigMap
	for _, k := range slices.Sorted(maps.Keys(s.objects)) {
		if cm := s.objects[k]; ns == "" || cm.Namespace == ns {
			items = append(items, cm)
		}
	}
	rv := strconv.FormatInt(s.rv, 10)
	if r.URL.Query().Get("watch") != "true" {
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, &corev1.ConfigMapList{
			TypeMeta: metav1.TypeMeta{Kind: "ConfigMapList", APIVersion: "v1"},
			ListMeta: metav1.ListMeta{ResourceVersion: rv}, Items: items,
		})
		return
	}
	// A watch from a resourceVersion gets the events after it first; the
	// watcher is registered under the same lock, so none falls between.
	var backlog []metav1.WatchEvent
	if from, err := strconv.ParseInt(r.URL.Query().Get("resourceVersion"), 10, 64); err == nil && from > 0 {
		for _, l := range s.log {
			if l.rv > from {
				backlog = append(backlog, l.ev)
			}
		}
	}
	ch := make(chan metav1.WatchEvent, 4096)
	s.watchers[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, ch)
		s.mu.Unlock()
	}()

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	send := func(ev metav1.WatchEvent) bool {
		if enc.Encode(ev) != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	if r.URL.Query().Get("sendInitialEvents") == "true" {
		for i := range items {
			raw, _ := json.Marshal(&items[i])
			if !send(metav1.WatchEvent{Type: watchAdded, Object: runtimeRaw(raw)}) {
				return
			}
		}
		bm, _ := json.Marshal(&corev1.ConfigMap{
			TypeMeta: metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv,
				Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}},
		})
		if !send(metav1.WatchEvent{Type: watchBookmark, Object: runtimeRaw(bm)}) {
			return
		}
	}
	for _, ev := range backlog {
		if !send(ev) {
			return
		}
	}
	ctx := r.Context()
	for {
		select {
		case ev, ok := <-ch:
			if !ok || !send(ev) {
				return
			}
		case <-ctx.Done():
			return
		case <-s.closed:
			return
		}
	}
}

func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, message string) {
	writeJSON(w, code, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Message: message, Reason: reason, Code: int32(code)})
}

func writeJSON(w http.ResponseWriter, code int, obj any) {
	b, err := json.Marshal(obj)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func runtimeRaw(b []byte) runtime.RawExtension { return runtime.RawExtension{Raw: b} }

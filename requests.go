package clusterregistry

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// A RequestObserver hears every request of the clients that ClientBuilder
// builds, when set as ClientBuilder.Observer: client-go's own metrics carry
// no cluster name. RequestDone is called in the goroutine of the request,
// with no lock of the library held, once its response's headers have come
// (or it failed); it must return quickly, and must not keep r's strings
// longer than the call if it wants to bound its memory (they are bounded in
// number, see RequestInfo). NopObserver implements it, so an Observer that
// embeds NopObserver can be a RequestObserver too.
type RequestObserver interface {
	RequestDone(cluster string, r RequestInfo)
}

// RequestInfo describes one request, with label values from a bounded set:
// they come from the API's paths, never from object names, namespaces or
// query strings, so a metric labelled by them cannot grow with the objects
// a cluster holds.
type RequestInfo struct {
	// Verb is the Kubernetes verb: get, list, watch, create, update, patch,
	// delete, deletecollection; for a path that names no resource (such as
	// /version, /readyz or discovery) the HTTP method in lower case (get,
	// post, ...), or "other".
	Verb string
	// Group, Version, Resource and Subresource come from the path
	// (/api/v1/namespaces/shop/pods/web/log: "", "v1", "pods", "log").
	// Resource is "other", and the rest empty, for a path that names no
	// resource or whose parts are not valid names.
	Group, Version, Resource, Subresource string
	// Code is the response's status code; 0 when no response came.
	Code int
	// Latency is the time from the request's start until its response's
	// headers came, or it failed: the time to the first byte, which a watch
	// or a long list also has.
	Latency time.Duration
	// Err is the request's error when no response came (a timeout, a refused
	// connection, a cluster known to be down); nil otherwise.
	Err error
}

// RequestDone does nothing.
func (NopObserver) RequestDone(string, RequestInfo) {}

// requestInfo describes req, with Code, Latency and Err left to the caller.
// It allocates nothing: the strings are constants or parts of the path.
func requestInfo(req *http.Request) RequestInfo {
	info := RequestInfo{Resource: "other"}
	path := strings.TrimSuffix(req.URL.Path, "/")
	var rest string
	switch {
	case strings.HasPrefix(path, "/api/"):
		info.Version, rest = cut(path[len("/api/"):])
	case strings.HasPrefix(path, "/apis/"):
		info.Group, rest = cut(path[len("/apis/"):])
		info.Version, rest = cut(rest)
	}
	watchPath := false
	if seg, after := cut(rest); seg == "watch" {
		watchPath, rest = true, after
	}
	resource, name, sub, ok := resourceOf(rest)
	if !ok || !validName(info.Group, 253) || !validName(info.Version, 63) || info.Version == "" {
		return RequestInfo{Verb: methodVerb(req.Method), Resource: "other"}
	}
	info.Resource, info.Subresource = resource, sub
	info.Verb = resourceVerb(req, name != "", watchPath)
	return info
}

// resourceOf parses what follows /api/VERSION/ or /apis/GROUP/VERSION/:
// [namespaces/NS/]RESOURCE[/NAME[/SUBRESOURCE]], where namespaces/NAME/status
// and namespaces/NAME/finalize are subresources of the namespace itself.
func resourceOf(rest string) (resource, name, sub string, ok bool) {
	if seg, after := cut(rest); seg == "namespaces" && after != "" {
		if _, tail := cut(after); tail != "" {
			if next, _ := cut(tail); next != "status" && next != "finalize" {
				rest = tail
			}
		}
	}
	resource, rest = cut(rest)
	name, rest = cut(rest)
	sub, rest = cut(rest)
	if resource == "" || rest != "" || !validName(resource, 63) || !validName(sub, 63) {
		return "", "", "", false
	}
	return resource, name, sub, true
}

// cut returns the first segment of a path without its leading slash, and
// the rest.
func cut(path string) (seg, rest string) {
	path = strings.TrimPrefix(path, "/")
	seg, rest, _ = strings.Cut(path, "/")
	return seg, rest
}

// validName reports whether s is empty or could be a resource, group or
// version name (lower-case letters, digits, '.', '-'), at most max bytes.
func validName(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func resourceVerb(req *http.Request, named, watchPath bool) string {
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watchPath || watchQuery(req):
			return "watch"
		case named:
			return "get"
		}
		return "list"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		if named {
			return "delete"
		}
		return "deletecollection"
	}
	return "other"
}

func watchQuery(req *http.Request) bool {
	if !strings.Contains(req.URL.RawQuery, "watch=") {
		return false
	}
	on, err := strconv.ParseBool(req.URL.Query().Get("watch"))
	return err == nil && on
}

func methodVerb(method string) string {
	switch method {
	case http.MethodGet:
		return "get"
	case http.MethodHead:
		return "head"
	case http.MethodPost:
		return "post"
	case http.MethodPut:
		return "put"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return "other"
}

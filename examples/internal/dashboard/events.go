package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/clusterregistry/clusterregistry"
)

// Event is the data of one message of GET /api/events: a Registry event.
type Event struct {
	Type       string `json:"type"`
	Cluster    string `json:"cluster,omitempty"`
	Generation uint64 `json:"generation"`
	// Error is the cluster's error (Failed) or the latest probe's
	// (Unhealthy); it never contains a credential.
	Error string `json:"error,omitempty"`
	// Health is the cluster's health state, for Healthy and Unhealthy.
	Health string `json:"health,omitempty"`
	// Replay marks the events of the state as it was when the stream began.
	Replay bool `json:"replay,omitempty"`
	// Time is when the dashboard sent the event.
	Time time.Time `json:"time"`
}

// events streams reg's events as Server-Sent Events, each a JSON Event
// ("data: {...}"), starting with the current state replayed. It runs on the
// request's goroutine and starts none: it returns when the client goes away
// (the request's context ends, as it does on the server's shutdown), or
// after an "end" message when the Syncer stops.
func events[T any](reg *clusterregistry.Registry[T]) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sub := reg.Subscribe()
		defer sub.Close()
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		if rc.Flush() != nil {
			return // a ResponseWriter that cannot stream
		}
		for {
			ev, err := sub.Next(r.Context())
			if errors.Is(err, clusterregistry.ErrStopped) {
				_, _ = fmt.Fprint(w, "event: end\ndata: {}\n\n")
				_ = rc.Flush()
				return
			}
			if err != nil {
				return // the client has gone
			}
			data, _ := json.Marshal(eventOf(ev))
			if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

func eventOf(ev clusterregistry.Event) Event {
	out := Event{Type: string(ev.Type), Cluster: ev.Name, Generation: ev.Generation, Replay: ev.Replay, Time: time.Now()}
	if ev.Err != nil {
		out.Error = ev.Err.Error()
	}
	if ev.Type == clusterregistry.EventHealthy || ev.Type == clusterregistry.EventUnhealthy {
		out.Health = ev.Health.State.String()
	}
	return out
}

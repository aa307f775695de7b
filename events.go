package clusterregistry

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// EventType says what happened to a cluster.
type EventType string

// The event types. A new subscriber first receives the current state as
// Added, Failed and Unhealthy events with Replay set.
const (
	// EventAdded: the cluster got its first client.
	EventAdded EventType = "Added"
	// EventUpdated: the cluster got a new client; the old one is released
	// once its leases are returned.
	EventUpdated EventType = "Updated"
	// EventRemoved: the cluster left the source; its client, if any, is
	// released once its leases are returned.
	EventRemoved EventType = "Removed"
	// EventFailed: the cluster has a new error (Event.Err). It keeps its last
	// good client, if it has one.
	EventFailed EventType = "Failed"
	// EventRecovered: the cluster's error cleared.
	EventRecovered EventType = "Recovered"
	// EventUnhealthy: a health probe says the cluster's client cannot be
	// used (Event.Health says how).
	EventUnhealthy EventType = "Unhealthy"
	// EventHealthy: probes succeed again.
	EventHealthy EventType = "Healthy"
	// EventResync: the subscriber fell too far behind; its pending events
	// were dropped, and the current state follows as replayed events.
	EventResync EventType = "Resync"
)

// An Event is one change of one cluster.
type Event struct {
	Type EventType
	Name string // the cluster's name; empty for EventResync
	// Generation is the Registry's generation that the event belongs to.
	Generation uint64
	// Err is the cluster's error for EventFailed, and the latest probe error
	// for EventUnhealthy. It never contains a credential.
	Err error
	// Health is the cluster's health for EventHealthy and EventUnhealthy.
	Health Health
	// Replay marks the events that describe the state as it was when the
	// subscriber subscribed (or resynced), rather than a change.
	Replay bool
	// Reason says why the cluster entered or left the source's listing, for
	// the EventAdded and EventRemoved of a source that is a Reasoner (a
	// shard moved it, say); empty otherwise.
	Reason string
}

// ErrUnsubscribed is returned by Subscription.Next after Close.
var ErrUnsubscribed = errors.New("subscription closed")

// subscriptionBacklog is how many events a subscriber may have pending when
// more arrive before it is resynced.
const subscriptionBacklog = 1024

// A Subscription delivers the events of a Registry, in order, to one
// subscriber. Events are queued for the subscriber, never sent while a lock
// of the Registry is held, so a slow subscriber blocks neither syncs nor
// other subscribers. If more than 1,024 of its events are pending when a sync
// queues more, they are dropped and it receives EventResync followed by the
// current state, replayed; it never misses the state, only intermediate
// steps. A subscriber with nothing pending receives every event of a sync,
// however many. When the Syncer stops, Next returns the last events (every
// cluster Removed), then an error wrapping ErrStopped. Close releases
// everything the subscription holds; a Subscription starts no goroutine.
type Subscription struct {
	reg interface{ unsubscribe(*Subscription) }

	notify chan struct{} // buffered 1: something was queued, or the end came

	mu     sync.Mutex // protects queue, closed and ended
	queue  []Event
	closed bool
	ended  error // why no event will come after the queue: ErrStopped
}

// Next returns the next event, waiting for one until ctx is done. After
// Close it returns ErrUnsubscribed; once its Syncer has stopped and every
// event is read, an error wrapping ErrStopped. Next may be called from one
// goroutine at a time.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for {
		if ev, ok, err := s.pop(); ok {
			return ev, err
		}
		select {
		case <-s.notify:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// pop returns the next event or the end of the subscription, and ok if
// either is there.
func (s *Subscription) pop() (ev Event, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return Event{}, true, ErrUnsubscribed
	case len(s.queue) > 0:
		ev = s.queue[0]
		s.queue[0] = Event{}
		s.queue = s.queue[1:]
		return ev, true, nil
	case s.ended != nil:
		return Event{}, true, fmt.Errorf("subscription ended: %w", s.ended)
	}
	return Event{}, false, nil
}

// Close ends the subscription: pending events are dropped and Next returns
// ErrUnsubscribed. Calls after the first do nothing.
func (s *Subscription) Close() {
	s.mu.Lock()
	already := s.closed
	s.closed, s.queue = true, nil
	s.mu.Unlock()
	if !already {
		s.reg.unsubscribe(s)
		s.wake()
	}
}

func (s *Subscription) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// deliver queues events, or resyncs the subscriber with replay() if it has
// fallen too far behind.
func (s *Subscription) deliver(events []Event, replay func() []Event) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.queue) > subscriptionBacklog {
		s.queue = append([]Event{{Type: EventResync}}, replay()...)
	} else {
		s.queue = append(s.queue, events...)
	}
	s.mu.Unlock()
	s.wake()
}

// end says that no event will follow the queued ones, because of err.
func (s *Subscription) end(err error) {
	s.mu.Lock()
	s.ended = err
	s.mu.Unlock()
	s.wake()
}

// Subscribe returns a subscription to the Registry's events. Its first events
// replay the current state (Replay set): an EventAdded for every cluster with
// a client, an EventFailed for every cluster with an error and an
// EventUnhealthy for every unhealthy one, so per-cluster work can start with
// no gap or overlap between "list" and "watch". The caller must Close it.
func (r *Registry[T]) Subscribe() *Subscription {
	sub := &Subscription{reg: r, notify: make(chan struct{}, 1)}
	r.eventsMu.Lock()
	defer r.eventsMu.Unlock()
	// Under eventsMu no state is published, so the replay and the events
	// that follow it meet exactly.
	cur := r.load()
	sub.queue = replayState(cur)
	if cur.stopped {
		sub.ended = ErrStopped
		return sub
	}
	if r.subscribers == nil {
		r.subscribers = make(map[*Subscription]struct{})
	}
	r.subscribers[sub] = struct{}{}
	return sub
}

func (r *Registry[T]) unsubscribe(sub *Subscription) {
	r.eventsMu.Lock()
	delete(r.subscribers, sub)
	r.eventsMu.Unlock()
}

// emitLocked queues the events of cur, the state just published, for every
// subscriber. r.eventsMu must be held.
func (r *Registry[T]) emitLocked(cur *state[T], events []Event) {
	if len(events) == 0 || len(r.subscribers) == 0 {
		return
	}
	replay := func() []Event { return replayState(cur) }
	for sub := range r.subscribers {
		sub.deliver(events, replay)
	}
}

// replayState describes st as events.
func replayState[T any](st *state[T]) []Event {
	events := make([]Event, 0, len(st.sorted))
	for _, m := range st.sorted {
		name := m.name
		if m.h != nil {
			events = append(events, Event{Type: EventAdded, Name: name, Generation: m.h.generation, Replay: true})
			if h := m.h.loadHealth(); h.State.unhealthy() {
				events = append(events, Event{Type: EventUnhealthy, Name: name, Generation: st.generation,
					Err: h.Err, Health: h, Replay: true})
			}
		}
		if m.fail != nil {
			events = append(events, Event{Type: EventFailed, Name: name, Generation: st.generation,
				Err: m.fail.err, Replay: true})
		}
	}
	return events
}

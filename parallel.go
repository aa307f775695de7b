package clusterregistry

import "sync"

// goLimited calls fn(i) for every i in [0, n), each in a goroutine of its
// own, at most limit at once, so that a slow call holds up no other. It
// returns at once; wait blocks until every call has returned and every
// goroutine it started has ended.
func goLimited(n, limit int, fn func(i int)) (wait func()) {
	var wg sync.WaitGroup
	wg.Add(n + 1)
	// The spawner waits for free slots, so that the caller can go on (a sync
	// publishes the builds that are done meanwhile).
	go func() {
		defer wg.Done()
		sem := make(chan struct{}, limit)
		for i := range n {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				fn(i)
			}()
		}
	}()
	return wg.Wait
}

//go:build race

package shard

// raceEnabled: the test binary runs with the race detector, and so do the
// replicas it builds.
const raceEnabled = true

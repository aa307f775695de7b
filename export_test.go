package clusterregistry

// SetTestHookAfterSyncUnlock makes f run in every Sync between the end of the
// sync and the release of what it retired, until the returned func resets it.
// Tests that set it must not run in parallel.
func SetTestHookAfterSyncUnlock(f func()) (reset func()) {
	testHookAfterSyncUnlock = f
	return func() { testHookAfterSyncUnlock = nil }
}

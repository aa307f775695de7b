package clusterregistry

import "time"

// WithAfterSyncUnlock makes f run in every Sync of this Syncer between the
// end of the sync and the release of what it retired.
func WithAfterSyncUnlock(f func()) Option {
	return optionFunc(func(o *options) { o.afterSyncUnlock = f })
}

// RequestTimeoutOf returns the request timeout that c's transport applies.
func RequestTimeoutOf(c *Client) time.Duration { return c.transport.timeout }

package metrics

import "time"

// SetClock makes m's recent request stats read the time from now. Call it
// before m records anything.
func SetClock(m *Metrics, now func() time.Time) { m.recent.now = now }

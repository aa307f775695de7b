package sqlsource

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"time"
)

// minChangeTimeout is the least time one run of the change query may take
// before it is cancelled, however short the poll interval.
const minChangeTimeout = time.Second

// Watch runs the change query (WithChangeQuery), calls changed once, then
// runs the query again a poll interval (WithPollInterval) after the end of
// each run and calls changed when its row differs from the previous run's.
// It also calls changed once when the query starts failing, so that the
// Syncer's next List reports the database's error, and once when it works
// again; WithLogger says where the query's error goes. A run that takes
// longer than the poll interval, or a second if that is more, is cancelled
// and counts as failing, so a database that hangs cannot stop the watch.
//
// Watch blocks until ctx is done, which also cancels a running query (if the
// driver honours contexts), and returns nil. Without a change query it has
// nothing to watch: it returns nil at once without calling changed, and the
// Syncer's interval decides how soon a changed row takes effect (Syncer.Run
// carries on without a watch, and so does not list twice at the start). It
// starts no goroutine. Several Watch calls may run at once; each runs the
// change query on its own.
func (s *Source) Watch(ctx context.Context, changed func()) error {
	if s.opts.changeQuery == nil {
		return nil
	}
	// The first result is taken before changed is called: a change made
	// before it is for the List that changed leads to, one made after it
	// for the next run to notice.
	prevRow, prevErr := s.runChangeQuery(ctx)
	if ctx.Err() != nil {
		return nil
	}
	if prevErr != nil {
		s.opts.logger.Error(prevErr, "Change query failed; changes take effect at the Syncer's interval until it works")
	}
	changed()

	// A timer set after each run rather than a ticker: a database slower
	// than the interval is not asked again the moment it answers.
	t := s.opts.clock.NewTimer(s.opts.pollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		row, err := s.runChangeQuery(ctx)
		if ctx.Err() != nil {
			return nil // the query was cut short: no result to compare
		}
		switch {
		case err != nil && prevErr == nil:
			s.opts.logger.Error(err, "Change query failed; changes take effect at the Syncer's interval until it works")
			changed()
		case err == nil && prevErr != nil:
			s.opts.logger.Info("Change query works again")
			changed()
		case err == nil && !sameRow(row, prevRow):
			changed()
		}
		prevRow, prevErr = row, err
		t.Reset(s.opts.pollInterval)
	}
}

// runChangeQuery runs the change query once, under a deadline of its own,
// and returns its row (nil if it returned none), with []byte values turned
// into strings. Its errors hide the query's arguments (scrub).
func (s *Source) runChangeQuery(ctx context.Context) ([]any, error) {
	qctx, cancel := context.WithTimeout(ctx, s.opts.changeTimeout)
	defer cancel()
	row, err := s.queryRow(qctx)
	err = scrub(err, s.opts.changeArgs)
	if err != nil && qctx.Err() != nil && ctx.Err() == nil {
		// The driver's error may not say that the deadline passed (SQLite
		// says "interrupted").
		return nil, fmt.Errorf("change query: no result within %v: %w", s.opts.changeTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("change query: %w", err)
	}
	return row, nil
}

func (s *Source) queryRow(ctx context.Context) ([]any, error) {
	rows, err := s.db.QueryContext(ctx, *s.opts.changeQuery, s.opts.changeArgs...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	names, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	row := make([]any, len(names))
	ptrs := make([]any, len(names))
	for i := range row {
		ptrs[i] = &row[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	if rows.Next() {
		return nil, errors.New("more than one row")
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i, v := range row {
		if b, ok := v.([]byte); ok {
			row[i] = string(b)
		}
	}
	return row, nil
}

// sameRow reports whether two rows of the change query hold the same values.
func sameRow(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameValue(a[i], b[i]) {
			return false
		}
	}
	return true
}

// sameValue compares two values as a driver returns them: int64, float64,
// bool, string (a []byte already turned into one), time.Time or nil (NULL),
// or whatever else a driver chooses.
func sameValue(a, b any) bool {
	switch a := a.(type) {
	case time.Time:
		b, ok := b.(time.Time)
		return ok && a.Equal(b)
	case float64:
		b, ok := b.(float64)
		return ok && (a == b || math.IsNaN(a) && math.IsNaN(b))
	}
	return reflect.DeepEqual(a, b)
}

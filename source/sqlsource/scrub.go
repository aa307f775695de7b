package sqlsource

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// minHiddenLen is the length, in bytes, from which an argument is hidden in
// a query's error. A shorter one ("eu", "1") would also hide the words that
// happen to contain it, and is too short to be a secret.
const minHiddenLen = 4

// scrub returns err unchanged unless its message quotes a string or []byte
// argument (or the value of an sql.NamedArg) of minHiddenLen bytes or more,
// as drivers do (PostgreSQL's `invalid input syntax for type uuid: "..."`).
// Then it returns an error whose message has each such argument replaced by
// $N, N being its position from 1, and that does not wrap err, whose fields
// may hold the argument too; it wraps context.DeadlineExceeded or
// context.Canceled if err does, so that callers can still tell a timeout.
func scrub(err error, args []any) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	type hidden struct {
		value string
		n     int
	}
	var hide []hidden
	for i, a := range args {
		if na, ok := a.(sql.NamedArg); ok {
			a = na.Value
		}
		var s string
		switch a := a.(type) {
		case string:
			s = a
		case []byte:
			s = string(a)
		default:
			continue
		}
		if len(s) >= minHiddenLen && strings.Contains(msg, s) {
			hide = append(hide, hidden{s, i + 1})
		}
	}
	if len(hide) == 0 {
		return err
	}
	// Longest first: an argument that contains another is replaced whole.
	slices.SortStableFunc(hide, func(a, b hidden) int { return cmp.Compare(len(b.value), len(a.value)) })
	pairs := make([]string, 0, 2*len(hide))
	for _, h := range hide {
		pairs = append(pairs, h.value, "$"+strconv.Itoa(h.n))
	}
	e := &scrubbedError{msg: strings.NewReplacer(pairs...).Replace(msg)}
	for _, ctxErr := range []error{context.DeadlineExceeded, context.Canceled} {
		if errors.Is(err, ctxErr) {
			e.ctxErr = ctxErr
			break
		}
	}
	return e
}

// scrubbedError is a driver's error with the query's arguments hidden.
type scrubbedError struct {
	msg    string
	ctxErr error // context.DeadlineExceeded, context.Canceled or nil
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.ctxErr }

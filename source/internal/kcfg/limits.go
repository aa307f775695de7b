package kcfg

import (
	"fmt"
	"strings"

	"github.com/clusterregistry/clusterregistry"
)

// Defaults of the sources' limits.
const (
	// DefaultMaxSize bounds one cluster description: a kubeconfig file, the
	// kubeconfig of a Secret or a row.
	DefaultMaxSize = 1 << 20
	// DefaultMaxClusters bounds the clusters one source lists.
	DefaultMaxClusters = 10_000
)

// TooBig is the error of a description bigger than limit bytes.
func TooBig(limit int64) error {
	return fmt.Errorf("more than the limit of %d bytes (WithMaxSize)", limit)
}

// TooMany is the error of a source that holds more clusters than limit.
func TooMany(limit int) error {
	return fmt.Errorf("more than the limit of %d clusters (WithMaxClusters)", limit)
}

// CheckLimits checks the limits that sources' options set.
func CheckLimits(maxSize int64, maxClusters int) error {
	var msgs []string
	if maxSize < 1 {
		msgs = append(msgs, fmt.Sprintf("max size must be at least 1, got %d", maxSize))
	}
	if maxClusters < 1 {
		msgs = append(msgs, fmt.Sprintf("max clusters must be at least 1, got %d", maxClusters))
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(msgs, "; "))
}

// NameErr is the error of a cluster name that fails
// clusterregistry.ValidateName.
func NameErr(name string, err error) error {
	if len(name) > 64 {
		name = strings.ToValidUTF8(name[:64], "") + "…"
	}
	return fmt.Errorf("cluster name %q: %w (rename it: WithRename(kubeconfig.SanitizeName), say)", name, err)
}

// SanitizeName maps name to a valid cluster name: every character other than
// an ASCII letter, a digit or . _ : @ - becomes '-', leading and trailing
// characters other than letters and digits are dropped, and the result is cut
// to clusterregistry.MaxNameLength. It returns "" when nothing is left. A
// valid name is returned unchanged.
func SanitizeName(name string) string {
	if clusterregistry.ValidateName(name) == nil {
		return name
	}
	var b strings.Builder
	for _, r := range name {
		if isAlnum(r) || strings.ContainsRune("._:@-", r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	s := b.String()
	if len(s) > clusterregistry.MaxNameLength {
		s = s[:clusterregistry.MaxNameLength]
	}
	return strings.TrimFunc(s, func(r rune) bool { return !isAlnum(r) })
}

func isAlnum(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
}

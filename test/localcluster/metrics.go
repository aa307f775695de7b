package localcluster

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
)

// Watches returns how many watches of the given resources (such as
// "secrets") the API server behind admin is serving, by its
// apiserver_longrunning_requests gauge. A scope of "namespace" or "cluster"
// counts only the watches of that scope ("" counts both): the API server's
// own informers watch across namespaces, so a test that watches one
// namespace counts only "namespace" to see its own.
func Watches(ctx context.Context, admin kubernetes.Interface, scope string, resources ...string) (int, error) {
	raw, err := admin.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimSpace(line)
		labels, ok := strings.CutPrefix(line, "apiserver_longrunning_requests{")
		// verb="WATCH", or "WATCHLIST" on older servers.
		if !ok || !strings.Contains(labels, `verb="WATCH`) ||
			scope != "" && !strings.Contains(labels, `scope="`+scope+`"`) ||
			!slices.ContainsFunc(resources, func(r string) bool { return strings.Contains(labels, `resource="`+r+`"`) }) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		n += int(v)
	}
	return n, nil
}

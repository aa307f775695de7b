package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clusterregistry/clusterregistry"
)

// Environment variables of the browser test.
const (
	// browserTestEnv=1 runs the browser test, and makes a missing browser a
	// failure rather than a skip. CI sets it after installing chromium.
	browserTestEnv = "CLUSTERREGISTRY_BROWSER_TEST"
	// chromiumEnv overrides the browser binary; default /usr/bin/chromium.
	chromiumEnv = "CLUSTERREGISTRY_CHROMIUM"
)

// newBrowser starts headless chromium for the test and returns a chromedp
// context of one tab. The browser is stopped when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if os.Getenv(browserTestEnv) != "1" {
		t.Skipf("set %s=1 to run the browser test (needs chromium: apt-get install -y chromium)", browserTestEnv)
	}
	path := os.Getenv(chromiumEnv)
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(path); err != nil {
		t.Fatalf("%s=1 but there is no browser at %s (%v): install it with "+
			"`apt-get update && apt-get install -y chromium`, or point %s at one", browserTestEnv, path, err, chromiumEnv)
	}

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // the test may run as root, in a container
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()), // a fresh profile
	)
	ctx, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // kills the browser and waits for it
	})
	// The first Run starts the browser; it must not have a timeout.
	_, err := chromedp.Run(ctx, chromedp.Evaluate[int]("1"))
	require.NoError(t, err, "starting %s", path)
	return ctx
}

// browse runs actions with a deadline, so that a page that never shows what
// the test waits for fails the test instead of hanging it.
func browse(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx, actions...))
}

func rowsOnPage(t *testing.T, ctx context.Context) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#clusters tr")).map(r => r.dataset.cluster)`))
	require.NoError(t, err)
	return rows
}

// TestDashboardInBrowser opens the dashboard of the demo's clusters in
// headless chromium: the page lists the clusters and shows a cluster's pods
// through the middleware; the overview shows a black-holed cluster as down
// beside the others, the clusters table shows its health as Unreachable
// and the event feed its Unhealthy event; a cluster removed from the source
// disappears from the page after the Sync button is pressed, and its
// Removed event shows in the feed.
//
//	CLUSTERREGISTRY_BROWSER_TEST=1 go test ./demo -run TestDashboardInBrowser -v
func TestDashboardInBrowser(t *testing.T) {
	browser := newBrowser(t) // skips unless CLUSTERREGISTRY_BROWSER_TEST=1, even without -short

	var out syncBuffer
	ctx := context.Background()
	d, err := start(ctx, options{addr: "127.0.0.1:0", out: &out})
	require.NoError(t, err, out.String())
	t.Cleanup(func() { assert.NoError(t, d.stop()) })
	// Three clusters, as after the demo's first step.
	d.source.Upsert(d.describe("cluster-3", false, "region", "ap-south"))
	require.NoError(t, d.waitFor(ctx, "cluster-3", func(s clusterregistry.Snapshot[*clusterregistry.Client]) bool {
		info, _ := s.Cluster("cluster-3")
		return info.Serving
	}))

	browse(t, browser,
		chromedp.Navigate(d.url),
		chromedp.WaitVisible(chromedp.CSS(`#clusters tr[data-cluster="cluster-3"]`)),
	)
	assert.Equal(t, []string{"cluster-1", "cluster-2", "cluster-3"}, rowsOnPage(t, browser))
	page, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS("#clusters")))
	require.NoError(t, err)
	assert.Contains(t, page, "v1.37.2", "the server version of each cluster")
	assert.Contains(t, page, "region=eu-west")
	assert.Contains(t, page, "default")

	// A cluster's pods, fetched by the page through the middleware.
	browse(t, browser,
		chromedp.Click(chromedp.CSS(`#clusters tr[data-cluster="cluster-2"] button.show`)),
		chromedp.WaitVisible(chromedp.CSS(`#pods tr[data-pod="shop/web-2"]`)),
	)
	pods, err := chromedp.Run(browser, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#pods tr")).map(r => r.dataset.pod)`))
	require.NoError(t, err)
	assert.Equal(t, []string{"shop/web-1", "shop/web-2"}, pods)

	// The overview asks every cluster at once: a black-holed cluster shows
	// as down there, beside the others' answers.
	c3 := d.env.Cluster("cluster-3")
	c3.BlackHole()
	browse(t, browser,
		chromedp.WaitVisible(chromedp.CSS(`#overview tr[data-cluster="cluster-3"][data-down="true"]`)),
	)
	down, err := chromedp.Run(browser, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#overview tr[data-down]")).map(r => r.dataset.cluster)`))
	require.NoError(t, err)
	assert.Equal(t, []string{"cluster-3"}, down, "only the black-holed cluster is down")
	overview, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS(`#overview tr[data-cluster="cluster-3"]`)))
	require.NoError(t, err)
	assert.Contains(t, overview, `cluster "cluster-3"`)
	// The probes find it unreachable: its health, and since when, in the
	// clusters table, and the event in the feed.
	browse(t, browser,
		chromedp.WaitVisible(chromedp.CSS(`#clusters tr[data-cluster="cluster-3"][data-health="Unreachable"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#events tr[data-type="Unhealthy"][data-cluster="cluster-3"]`)),
	)
	health, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS(`#clusters tr[data-cluster="cluster-3"] td.health`)))
	require.NoError(t, err)
	assert.Contains(t, health, "Unreachable since ")
	event, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS(`#events tr[data-type="Unhealthy"][data-cluster="cluster-3"]`)))
	require.NoError(t, err)
	assert.Contains(t, event, "Unreachable")
	require.NoError(t, c3.Heal())

	// Remove cluster-3 from the source and press Sync: its row goes.
	d.source.Delete("cluster-3")
	browse(t, browser,
		chromedp.Click(chromedp.ID("sync")),
		chromedp.WaitNotPresent(chromedp.CSS(`#clusters tr[data-cluster="cluster-3"]`)),
	)
	assert.Equal(t, []string{"cluster-1", "cluster-2"}, rowsOnPage(t, browser))
	browse(t, browser, chromedp.WaitVisible(chromedp.CSS(`#events tr[data-type="Removed"][data-cluster="cluster-3"]`)))
	status, err := chromedp.Run(browser, chromedp.Text(chromedp.ID("sync-status")))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(status, "generation "), "the sync's report is shown: %q", status)
	generation, err := chromedp.Run(browser, chromedp.Text(chromedp.ID("generation")))
	require.NoError(t, err)
	assert.Equal(t, "3", generation, "the page shows the registry's generation")
}

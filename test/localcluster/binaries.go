package localcluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BinDirEnv names the environment variable that overrides the directory
// where the built etcd and kube-apiserver binaries are kept.
const BinDirEnv = "CLUSTERREGISTRY_BIN_DIR"

// Binaries are the paths of the two server binaries the harness runs.
type Binaries struct {
	Etcd          string
	KubeAPIServer string
}

// tool is one server binary: the module under tools/ that pins it, the
// package that is its main, and how to link it.
type tool struct {
	name    string // binary name: "etcd", "kube-apiserver"
	dir     string // module directory under tools/
	module  string // the pinned module whose version names the binary
	pkg     string // main package to build
	ldflags func(version string) string
	// expected is how long a build with a cold Go cache takes on 2 cores.
	expected string
}

var tools = []tool{
	{
		name:     "etcd",
		dir:      "etcd",
		module:   "go.etcd.io/etcd/server/v3",
		pkg:      "go.etcd.io/etcd/server/v3",
		ldflags:  func(string) string { return "-s -w" },
		expected: "about 1 to 3 minutes",
	},
	{
		name:   "kube-apiserver",
		dir:    "kube-apiserver",
		module: "k8s.io/kubernetes",
		pkg:    "k8s.io/kubernetes/cmd/kube-apiserver",
		ldflags: func(version string) string {
			// Without these the server reports a placeholder version.
			major, minor := "", ""
			if parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3); len(parts) >= 2 {
				major, minor = parts[0], parts[1]
			}
			return "-s -w" +
				" -X k8s.io/component-base/version.gitVersion=" + version +
				" -X k8s.io/component-base/version.gitMajor=" + major +
				" -X k8s.io/component-base/version.gitMinor=" + minor
		},
		expected: "about 10 minutes",
	},
}

// BinDir returns the directory where EnsureBinaries keeps the binaries:
// $CLUSTERREGISTRY_BIN_DIR when set, else clusterregistry/bin under the user
// cache directory (${XDG_CACHE_HOME:-$HOME/.cache}).
func BinDir() (string, error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		return filepath.Abs(dir)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("user cache directory: %w (set %s)", err, BinDirEnv)
	}
	return filepath.Join(cache, "clusterregistry", "bin"), nil
}

// toolsDir is test/tools in the source tree this package was compiled from.
func toolsDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "", errors.New("cannot locate the tools modules: build without -trimpath")
	}
	return filepath.Join(filepath.Dir(file), "..", "tools"), nil
}

var (
	binMu     sync.Mutex // serialises EnsureBinaries within the process; guards binCached
	binCached *Binaries
)

// EnsureBinaries returns the etcd and kube-apiserver binaries, building each
// one that is not in BinDir yet. A binary's file name carries its pinned
// version and a hash of its build module and flags (for example
// kube-apiserver-v1.37.2-3f2a9c0d1e4b), so changing a pin builds anew and
// never reuses a stale binary; older builds of the same tool are removed.
//
// It blocks for as long as a build takes: with a cold Go build cache about
// 10 minutes for kube-apiserver and 1 to 3 for etcd on 2 cores; with a warm
// one, seconds. Progress goes to progress (nil discards it). Processes that
// build at the same time (go test runs packages in parallel) take turns
// through a lock file, so each binary is built once. ctx cancels a build.
//
// It needs the go command (the one running the build, or the first on PATH),
// the module proxy or a filled module cache, and the source tree of this
// module: it builds from test/tools.
func EnsureBinaries(ctx context.Context, progress io.Writer) (Binaries, error) {
	if progress == nil {
		progress = io.Discard
	}
	binMu.Lock()
	defer binMu.Unlock()
	if binCached != nil {
		return *binCached, nil
	}

	binDir, err := BinDir()
	if err != nil {
		return Binaries{}, err
	}
	tdir, err := toolsDir()
	if err != nil {
		return Binaries{}, err
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return Binaries{}, err
	}
	unlock, err := lockFile(ctx, filepath.Join(binDir, ".lock"), progress)
	if err != nil {
		return Binaries{}, err
	}
	defer unlock()

	paths := make(map[string]string, len(tools))
	for _, tl := range tools {
		p, err := ensureTool(ctx, tl, filepath.Join(tdir, tl.dir), binDir, progress)
		if err != nil {
			return Binaries{}, err
		}
		paths[tl.name] = p
	}
	bins := Binaries{Etcd: paths["etcd"], KubeAPIServer: paths["kube-apiserver"]}
	binCached = &bins
	return bins, nil
}

func ensureTool(ctx context.Context, tl tool, modDir, binDir string, progress io.Writer) (string, error) {
	gomod, err := os.ReadFile(filepath.Join(modDir, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("%s: build module: %w", tl.name, err)
	}
	gosum, err := os.ReadFile(filepath.Join(modDir, "go.sum"))
	if err != nil {
		return "", fmt.Errorf("%s: build module: %w", tl.name, err)
	}
	version := requiredVersion(string(gomod), tl.module)
	if version == "" {
		return "", fmt.Errorf("%s: %s/go.mod does not require %s", tl.name, modDir, tl.module)
	}
	ldflags := tl.ldflags(version)
	h := sha256.New()
	for _, part := range [][]byte{gomod, gosum, []byte(tl.pkg), []byte(ldflags), []byte(runtime.GOOS + "/" + runtime.GOARCH)} {
		h.Write(part)
		h.Write([]byte{0})
	}
	base := tl.name + "-" + version + "-" + hex.EncodeToString(h.Sum(nil))[:12]
	out := filepath.Join(binDir, base)
	if fi, err := os.Stat(out); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return out, nil
	}

	fmt.Fprintf(progress, "localcluster: building %s %s into %s\n", tl.name, version, out)
	fmt.Fprintf(progress, "localcluster: with a cold Go build cache this takes %s on 2 cores; later runs reuse the binary\n", tl.expected)
	tmp := out + ".tmp"
	_ = os.Remove(tmp)
	start := time.Now()
	err = runBuild(ctx, tl.name, modDir, progress, "build", "-ldflags="+ldflags, "-o", tmp, tl.pkg)
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("building %s %s (in %s): %w", tl.name, version, modDir, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "localcluster: built %s in %s\n", tl.name, time.Since(start).Round(time.Second))

	// Older builds of the same tool only take disk space.
	if old, err := filepath.Glob(filepath.Join(binDir, tl.name+"-v*")); err == nil {
		for _, p := range old {
			if p != out {
				_ = os.Remove(p)
			}
		}
	}
	return out, nil
}

// requiredVersion finds the version of module in the require lines of a
// go.mod file.
func requiredVersion(gomod, module string) string {
	for line := range strings.Lines(gomod) {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "require" {
			f = f[1:]
		}
		if len(f) >= 2 && f[0] == module && strings.HasPrefix(f[1], "v") {
			return f[1]
		}
	}
	return ""
}

// goCommand is the go command of $GOROOT if set, else the first on PATH
// (go test and go generate put the running toolchain's first).
func goCommand() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// runBuild runs the go command in dir. The environment pins what changes the
// compiled code, so that every build of one pin shares the Go build cache
// and a warm rebuild takes seconds.
func runBuild(ctx context.Context, name, dir string, progress io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, goCommand(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"CGO_ENABLED=0",
		"GOFLAGS=-mod=readonly -buildvcs=false",
		"GOWORK=off",
		"GOOS="+runtime.GOOS,
		"GOARCH="+runtime.GOARCH,
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var output strings.Builder
	cmd.Stdout = &output
	cmd.Stderr = &output
	// The build gets SIGKILL if the thread that started it ends (see
	// startProcess), so the start and the wait share one locked thread.
	result := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			result <- err
			return
		}
		result <- cmd.Wait()
	}()

	// Report every 30s, so that a long build does not look hung. The
	// goroutine ends when the build does.
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		start := time.Now()
		tick := time.NewTicker(30 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				fmt.Fprintf(progress, "localcluster: still building %s (%s)\n", name, time.Since(start).Round(time.Second))
			}
		}
	})
	err := <-result
	close(done)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("%w\n%s", err, tail(output.String(), 40))
	}
	return nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lockFile takes an exclusive flock on path, waiting for another process
// that holds it (and saying so).
func lockFile(ctx context.Context, path string, progress io.Writer) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !said {
			fmt.Fprintf(progress, "localcluster: waiting for another process building into %s\n", filepath.Dir(path))
			said = true
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

package localcluster

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
)

// process is one server process. It runs in a process group of its own and
// gets SIGKILL when the thread that started it ends, which happens at the
// latest when this process dies, however it dies: a server never outlives
// the test binary or command that started it.
type process struct {
	name    string
	logPath string
	pid     int
	done    chan struct{} // closed once the process has exited and was reaped
	err     error         // exit status; read only after done is closed
}

// startProcess starts bin with args, appending its stdout and stderr to
// logPath. It returns once the process runs; a goroutine waits for its exit,
// which kill (or the process itself) brings about.
func startProcess(name, bin string, args []string, logPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p := &process{name: name, logPath: logPath, done: make(chan struct{})}
	started := make(chan error, 1)

	// Pdeathsig fires when the starting thread exits, not the process, so the
	// goroutine keeps its thread locked for as long as the child runs; it
	// unlocks before it returns so that the thread lives on. It ends when the
	// child exits.
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()

		cmd := exec.Command(bin, args...)
		cmd.Stdout = logf
		cmd.Stderr = logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		err := cmd.Start()
		_ = logf.Close() // the child has its own copy
		if err != nil {
			started <- err
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the process group and waits until the process has
// been reaped. It is safe to call more than once.
func (p *process) kill() {
	if !p.exited() {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
	<-p.done
}

// exitError describes how the process ended, with the end of its log.
func (p *process) exitError() error {
	b, _ := os.ReadFile(p.logPath)
	return fmt.Errorf("%s exited (%v); last lines of %s:\n%s", p.name, p.err, p.logPath, tail(strings.TrimSpace(string(b)), 20))
}

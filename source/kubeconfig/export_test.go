package kubeconfig

// Polls returns how many polls the Watch calls on w have finished.
func Polls(w any) int64 {
	switch w := w.(type) {
	case *Source:
		return w.p.polls.Load()
	case *Dir:
		return w.p.polls.Load()
	}
	panic("not a Source or Dir")
}

package kubeconfig

// RacyWindow is racyWindow.
const RacyWindow = racyWindow

// ReadFile is how a Source or Dir reads a file unless WithReadFile says
// otherwise.
var ReadFile = readFile

// WithReadFile makes a Source or Dir read every file with read, so that a
// test can hold a poll in the middle of its reads.
func WithReadFile(read func(path string, limit int64) ([]byte, error)) Option {
	return optionFunc(func(o *options) { o.readFile = read })
}

// WithNoMemo makes a Dir resolve every file's contexts on every List, as it
// did before a File kept its resolved contexts: the baseline of benchmarks.
func WithNoMemo() Option {
	return optionFunc(func(o *options) { o.noMemo = true })
}

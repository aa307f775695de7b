package compose

// WithAnswered calls f each time a part's result is ready for its merged
// List.
func WithAnswered(f func()) Option {
	return optionFunc(func(o *options) { o.answered = f })
}

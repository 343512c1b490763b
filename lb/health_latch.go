package lb

// HealthLatch remembers the last health a part reported, so that the part
// reports only changes (healthy or not, and the error's text). The zero
// value has reported nothing. It is not safe for concurrent use: the one
// goroutine that reports owns it.
type HealthLatch struct {
	told, ok bool
	msg      string
}

// Changed reports whether err differs from the health last passed to
// Changed (always true the first time), and records it.
func (l *HealthLatch) Changed(err error) bool {
	ok, msg := err == nil, ""
	if err != nil {
		msg = err.Error()
	}
	if l.told && ok == l.ok && msg == l.msg {
		return false
	}
	l.told, l.ok, l.msg = true, ok, msg
	return true
}

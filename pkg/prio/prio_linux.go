package prio

import "golang.org/x/sys/unix"

// setThreadNice sets the calling thread's nice value (on Linux, PRIO_PROCESS
// with a thread ID applies to that thread alone).
func setThreadNice(n int) error {
	return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), n)
}

// ThreadNice returns the calling thread's nice value (diagnostics, tests).
func ThreadNice() (int, error) {
	// The raw syscall returns 20 - nice, so it is never negative.
	p, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	if err != nil {
		return 0, err
	}
	return 20 - p, nil
}

//go:build !linux

package prio

import "errors"

var errUnsupported = errors.New("per-thread priority is Linux only")

func setThreadNice(int) error { return errUnsupported }

// ThreadNice is Linux only.
func ThreadNice() (int, error) { return 0, errUnsupported }

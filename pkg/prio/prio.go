// Package prio lowers the CPU priority of chatd's background writers, so
// they yield the processor to live traffic when it is contended.
//
// The store and index roles write the log's messages in batches, and
// SQLite checkpoints its write-ahead log; none of that is waited on by a
// client, and each batch can hold a processor for milliseconds. Acks and
// fanout are waited on. Databases treat compaction the same way (RocksDB
// lowers its compaction threads' priority). Go has no goroutine
// priorities, so a background goroutine is locked to an OS thread of its
// own and that thread gets a nice value: with a GOMAXPROCS slot to spare
// for each such thread the kernel then runs live work first (see
// EnsureProcs).
package prio

import (
	"runtime"
	"runtime/debug"
	"sync/atomic"
)

// MaxNice is the lowest priority a thread can be given (Linux nice 19).
const MaxNice = 19

var backgroundNice atomic.Int32

// SetBackgroundNice sets the nice value Background gives threads from now
// on, 0 (as any thread: Background does nothing) to MaxNice.
func SetBackgroundNice(n int) { backgroundNice.Store(int32(min(max(n, 0), MaxNice))) }

// Background marks the calling goroutine as background work: when a nice
// value is set it locks the goroutine to its OS thread for the rest of its
// life and lowers that thread's priority. Call it first in a goroutine that
// only does background work; the thread ends when the goroutine returns,
// so the priority never leaks to other goroutines. It reports whether the
// priority was lowered.
func Background() bool {
	n := int(backgroundNice.Load())
	if n <= 0 {
		return false
	}
	runtime.LockOSThread()
	// Never unlocked: a goroutine that exits locked takes its thread
	// with it.
	return setThreadNice(n) == nil
}

// EnsureProcs gives every thread that may run background work at once a P
// of its own on top of the CPUs': unless the GOMAXPROCS environment
// variable sets it, GOMAXPROCS becomes its default (the CPUs this process
// may use) plus background, and at least 2. Go does not know a thread's
// nice value: a background batch holds its P until it blocks or Go
// preempts it after 10 ms, however low its thread's priority, so with only
// as many Ps as CPUs the store and index batches could hold every P and
// leave acks and fanout waiting. With the extra Ps live work always has one
// per CPU and the kernel runs it first. It returns the value in effect.
func EnsureProcs(env func(string) string, background int) int {
	n := runtime.GOMAXPROCS(0)
	if env("GOMAXPROCS") != "" {
		return n
	}
	want := max(n+max(background, 0), 2)
	if want != n {
		runtime.GOMAXPROCS(want)
	}
	return want
}

// GCPercent is the garbage collector's target chatd runs with unless the
// GOGC environment variable sets one (Go's default is 100).
const GCPercent = 200

// EnsureGCPercent sets the garbage collector's target to GCPercent unless
// the GOGC environment variable sets it; it reports whether it did.
// A collection cycle stops every P at a safe point (to finish marking, and
// twice for a moment to stop the world), and a P held by a background
// thread the kernel is keeping off the CPU reaches it only when that
// thread next runs, which holds every goroutine that allocates meanwhile.
// Fewer cycles, fewer such stalls: at 2,000 durable sends/s on one CPU the
// ack p99 was 9.3-11.7 ms at 100, 7.1-8.1 ms at 200 and 5.3-5.8 ms with
// no collection at all, for 20 MB more resident memory (0.5 KB more per
// idle socket).
func EnsureGCPercent(env func(string) string) bool {
	if env("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(GCPercent)
	return true
}

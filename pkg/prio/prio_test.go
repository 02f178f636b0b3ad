package prio

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestBackgroundLowersOnlyItsThread(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("per-thread priority is Linux only")
	}
	defer SetBackgroundNice(0)

	SetBackgroundNice(0)
	if Background() {
		t.Fatal("Background lowered a priority with no nice value set")
	}

	SetBackgroundNice(7)
	got := make(chan int, 1)
	go func() {
		if !Background() {
			got <- -1
			return
		}
		n, err := ThreadNice()
		if err != nil {
			t.Error(err)
		}
		got <- n
	}()
	if n := <-got; n != 7 {
		t.Fatalf("background thread nice %d, want 7", n)
	}

	// The background goroutine has returned and its thread with it: no
	// other goroutine ever runs at its priority.
	for range 50 {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			n, err := ThreadNice()
			if err != nil {
				t.Error(err)
			}
			got <- n
		}()
		if n := <-got; n != 0 {
			t.Fatalf("a later goroutine's thread has nice %d, want 0", n)
		}
	}
}

func TestSetBackgroundNiceClamps(t *testing.T) {
	defer SetBackgroundNice(0)
	for _, c := range []struct{ in, want int32 }{{-5, 0}, {0, 0}, {10, 10}, {19, 19}, {40, 19}} {
		SetBackgroundNice(int(c.in))
		if n := backgroundNice.Load(); n != c.want {
			t.Errorf("SetBackgroundNice(%d) stored %d, want %d", c.in, n, c.want)
		}
	}
}

func TestEnsureProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		procs, background, want int
	}{
		{1, 0, 2}, // one P: a second lets the kernel switch at once
		{1, 3, 4}, // one CPU, three background threads
		{2, 3, 5},
		{4, 0, 4},
		{4, -1, 4},
	} {
		runtime.GOMAXPROCS(tc.procs)
		if n := EnsureProcs(noEnv, tc.background); n != tc.want || runtime.GOMAXPROCS(0) != tc.want {
			t.Errorf("%d Ps, %d background: got %d (GOMAXPROCS %d), want %d", tc.procs, tc.background, n, runtime.GOMAXPROCS(0), tc.want)
		}
	}

	runtime.GOMAXPROCS(1)
	if n := EnsureProcs(func(k string) string {
		if k == "GOMAXPROCS" {
			return "1"
		}
		return ""
	}, 3); n != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("an explicit GOMAXPROCS=1 became %d", n)
	}
}

func TestEnsureGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	debug.SetGCPercent(100)
	if !EnsureGCPercent(func(string) string { return "" }) || debug.SetGCPercent(GCPercent) != GCPercent {
		t.Fatalf("without GOGC the target is not %d", GCPercent)
	}
	debug.SetGCPercent(50) // as the runtime sets it from GOGC=50
	if EnsureGCPercent(func(k string) string {
		if k == "GOGC" {
			return "50"
		}
		return ""
	}) || debug.SetGCPercent(50) != 50 {
		t.Fatal("GOGC=50 was overridden")
	}
}

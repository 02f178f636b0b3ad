package chat

import (
	"context"
	"testing"
	"time"
)

func TestBound(t *testing.T) {
	// No deadline: one is added.
	ctx, cancel := Bound(context.Background(), time.Minute)
	dl, ok := ctx.Deadline()
	if !ok || time.Until(dl) > time.Minute || time.Until(dl) < 59*time.Second {
		t.Fatalf("deadline %v, %v; want about a minute from now", dl, ok)
	}
	cancel()
	if ctx.Err() == nil {
		t.Fatal("cancel did not cancel the new context")
	}

	// An earlier deadline is kept, and the context is the same one.
	parent, pcancel := context.WithTimeout(context.Background(), time.Second)
	defer pcancel()
	ctx, cancel = Bound(parent, time.Minute)
	if ctx != parent {
		t.Fatal("a context with an earlier deadline was wrapped")
	}
	cancel()
	if parent.Err() != nil {
		t.Fatal("the no-op cancel cancelled the parent")
	}

	// A later deadline is shortened.
	later, lcancel := context.WithTimeout(context.Background(), time.Hour)
	defer lcancel()
	ctx, cancel = Bound(later, time.Second)
	defer cancel()
	if dl, _ := ctx.Deadline(); time.Until(dl) > time.Second {
		t.Fatalf("deadline %v; want within a second", dl)
	}
	lcancel()
	if ctx.Err() == nil {
		t.Fatal("cancelling the parent did not reach the bounded context")
	}
}

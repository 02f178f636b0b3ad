package chat

import (
	"context"
	"time"
)

// Bound returns ctx bounded by d: ctx itself when its deadline already
// comes no later than d from now, otherwise context.WithTimeout(ctx, d).
// A send passes several layers that each bound it; a timeout costs a timer
// (set, then stopped on cancel), and the inner ones would never fire first.
func Bound(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && !dl.After(time.Now().Add(d)) {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

package kafka

import (
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kgoLogger adapts franz-go's logger to slog. franz-go's "info" level
// reports every connection and group step, which is noise at an operator's
// default level, so it is logged at slog debug; franz-go debug goes below that.
type kgoLogger struct{ log *slog.Logger }

var _ kgo.Logger = kgoLogger{}

func slogLevel(l kgo.LogLevel) slog.Level {
	switch l {
	case kgo.LogLevelError:
		return slog.LevelError
	case kgo.LogLevelWarn:
		return slog.LevelWarn
	case kgo.LogLevelInfo:
		return slog.LevelDebug
	default:
		return slog.LevelDebug - 4
	}
}

// Level returns the most verbose franz-go level the slog handler would
// keep, so franz-go does not format messages that would be dropped.
func (k kgoLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	for _, l := range []kgo.LogLevel{kgo.LogLevelDebug, kgo.LogLevelInfo, kgo.LogLevelWarn, kgo.LogLevelError} {
		if k.log.Enabled(ctx, slogLevel(l)) {
			return l
		}
	}
	return kgo.LogLevelNone
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	k.log.Log(context.Background(), slogLevel(level), msg, keyvals...)
}

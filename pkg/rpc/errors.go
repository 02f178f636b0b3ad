package rpc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chatd/chatd/pkg/chat"
	pb "github.com/chatd/chatd/pkg/rpc/chatdv1"
)

// grpcCode maps a chat error code to the closest gRPC code. The chat code
// itself travels in the status details; the gRPC code matters to gRPC
// machinery (retry policy on UNAVAILABLE) and to tools like grpcurl.
func grpcCode(code string) codes.Code {
	switch code {
	case chat.EINVALID, chat.ETOOLARGE:
		return codes.InvalidArgument
	case chat.EUNAUTHENTICATED:
		return codes.Unauthenticated
	case chat.EFORBIDDEN:
		return codes.PermissionDenied
	case chat.ENOTFOUND:
		return codes.NotFound
	case chat.ECONFLICT:
		return codes.AlreadyExists
	case chat.ERATELIMITED:
		return codes.ResourceExhausted
	case chat.EUNAVAILABLE:
		return codes.Unavailable
	default:
		return codes.Internal
	}
}

// toStatus turns a service error into the status sent to the client. Only
// client-safe text crosses the wire: an error without a chat code becomes
// "internal error", and its details stay in this process's log.
func toStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		// The caller gave up or ran out of time; it will not read a reply.
		return status.FromContextError(err).Err()
	}
	w := chat.ToWire(err)
	// The status message is only for people reading gRPC tools, and
	// must be UTF-8; the exact message travels as bytes in the details.
	st := status.New(grpcCode(w.Code), strings.ToValidUTF8(w.Message, "\uFFFD"))
	if d, derr := st.WithDetails(&pb.Error{Code: w.Code, Message: []byte(w.Message), RetryAfterMillis: w.RetryAfterMS}); derr == nil {
		st = d
	}
	return st.Err()
}

// fromStatus turns an error of a gRPC call back into what the in-process
// service would have returned: the identical *chat.Error when the server sent
// one, EUNAVAILABLE when the peer could not be reached in time, and an
// internal error (which shows clients only "internal error") otherwise.
func fromStatus(ctx context.Context, service string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("rpc %s: %w", service, err)
	}
	for _, d := range st.Details() {
		if e, ok := d.(*pb.Error); ok {
			return &chat.Error{Code: e.GetCode(), Message: string(e.GetMessage()), RetryAfterMillis: e.GetRetryAfterMillis()}
		}
	}
	switch st.Code() {
	case codes.Canceled:
		if ctx.Err() != nil {
			return fmt.Errorf("rpc %s: %w", service, ctx.Err())
		}
		return fmt.Errorf("rpc %s: %w: %w", service, chat.Errorf(chat.EUNAVAILABLE, "%s unavailable", service), err)
	case codes.Unavailable, codes.DeadlineExceeded, codes.Unimplemented:
		// Unimplemented: the peer runs, but not this role, which for the
		// caller is the same as the role being down: a configuration to
		// fix, not a bug in the request. ctx.Err() stays in the chain so
		// errors.Is(err, context.DeadlineExceeded) still holds.
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("rpc %s: %w: %w: %w", service, chat.Errorf(chat.EUNAVAILABLE, "%s unavailable", service), cerr, err)
		}
		return fmt.Errorf("rpc %s: %w: %w", service, chat.Errorf(chat.EUNAVAILABLE, "%s unavailable", service), err)
	default:
		return fmt.Errorf("rpc %s: %w", service, err)
	}
}

package rpc

import (
	"context"

	"github.com/chatd/chatd/pkg/chat"
	pb "github.com/chatd/chatd/pkg/rpc/chatdv1"
)

// The server halves: each method decodes the request, calls the in-process
// service and encodes its answer. Errors are returned as they come; the
// server's interceptor turns them into statuses.

type userServer struct {
	pb.UnimplementedUserServiceServer
	svc chat.UserService
}

func (s *userServer) Register(ctx context.Context, r *pb.RegisterRequest) (*pb.User, error) {
	u, err := s.svc.Register(ctx, string(r.GetUsername()), string(r.GetPassword()), string(r.GetDisplayName()), string(r.GetEmail()))
	if err != nil {
		return nil, err
	}
	return userToPB(u), nil
}

func (s *userServer) Login(ctx context.Context, r *pb.LoginRequest) (*pb.LoginResponse, error) {
	token, sess, u, err := s.svc.Login(ctx, string(r.GetUsername()), string(r.GetPassword()))
	if err != nil {
		return nil, err
	}
	return &pb.LoginResponse{Token: token, Session: sessionToPB(sess), User: userToPB(u)}, nil
}

func (s *userServer) Logout(ctx context.Context, r *pb.LogoutRequest) (*pb.LogoutResponse, error) {
	if err := s.svc.Logout(ctx, string(r.GetTokenHash())); err != nil {
		return nil, err
	}
	return &pb.LogoutResponse{}, nil
}

func (s *userServer) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.Caller, error) {
	c, err := s.svc.Authenticate(ctx, string(r.GetToken()))
	if err != nil {
		return nil, err
	}
	return callerToPB(c), nil
}

func (s *userServer) GetUser(ctx context.Context, r *pb.GetUserRequest) (*pb.User, error) {
	u, err := s.svc.User(ctx, chat.ID(r.GetId()))
	if err != nil {
		return nil, err
	}
	return userToPB(u), nil
}

func (s *userServer) GetUserByName(ctx context.Context, r *pb.GetUserByNameRequest) (*pb.User, error) {
	u, err := s.svc.UserByName(ctx, string(r.GetUsername()))
	if err != nil {
		return nil, err
	}
	return userToPB(u), nil
}

type roomServer struct {
	pb.UnimplementedRoomServiceServer
	svc chat.RoomService
}

func (s *roomServer) CreateRoom(ctx context.Context, r *pb.CreateRoomRequest) (*pb.Room, error) {
	room, err := s.svc.CreateRoom(ctx, chat.ID(r.GetCaller()), string(r.GetName()), string(r.GetDescription()), r.GetPrivate())
	if err != nil {
		return nil, err
	}
	return roomToPB(room), nil
}

func (s *roomServer) GetRoom(ctx context.Context, r *pb.GetRoomRequest) (*pb.Room, error) {
	room, err := s.svc.Room(ctx, chat.ID(r.GetCaller()), chat.ID(r.GetRoomId()))
	if err != nil {
		return nil, err
	}
	return roomToPB(room), nil
}

func (s *roomServer) ListRooms(ctx context.Context, r *pb.ListRoomsRequest) (*pb.ListRoomsResponse, error) {
	rooms, err := s.svc.ListRooms(ctx, chat.ID(r.GetCaller()))
	if err != nil {
		return nil, err
	}
	out, isNil := roomsToPB(rooms)
	return &pb.ListRoomsResponse{Rooms: out, RoomsNil: isNil}, nil
}

func (s *roomServer) UpdateRoom(ctx context.Context, r *pb.UpdateRoomRequest) (*pb.Room, error) {
	// Name and Description are nil when absent on the wire, as in chat.RoomUpdate.
	room, err := s.svc.UpdateRoom(ctx, chat.ID(r.GetCaller()), chat.ID(r.GetRoomId()), chat.RoomUpdate{Name: optString(r.Name), Description: optString(r.Description)})
	if err != nil {
		return nil, err
	}
	return roomToPB(room), nil
}

func (s *roomServer) DeleteRoom(ctx context.Context, r *pb.DeleteRoomRequest) (*pb.DeleteRoomResponse, error) {
	if err := s.svc.DeleteRoom(ctx, chat.ID(r.GetCaller()), chat.ID(r.GetRoomId())); err != nil {
		return nil, err
	}
	return &pb.DeleteRoomResponse{}, nil
}

func (s *roomServer) AddMember(ctx context.Context, r *pb.AddMemberRequest) (*pb.AddMemberResponse, error) {
	if err := s.svc.AddMember(ctx, chat.ID(r.GetCaller()), chat.ID(r.GetRoomId()), string(r.GetUsername())); err != nil {
		return nil, err
	}
	return &pb.AddMemberResponse{}, nil
}

func (s *roomServer) RemoveMember(ctx context.Context, r *pb.RemoveMemberRequest) (*pb.RemoveMemberResponse, error) {
	if err := s.svc.RemoveMember(ctx, chat.ID(r.GetCaller()), chat.ID(r.GetRoomId()), chat.ID(r.GetUserId())); err != nil {
		return nil, err
	}
	return &pb.RemoveMemberResponse{}, nil
}

func (s *roomServer) ListMembers(ctx context.Context, r *pb.ListMembersRequest) (*pb.ListMembersResponse, error) {
	users, err := s.svc.Members(ctx, chat.ID(r.GetCaller()), chat.ID(r.GetRoomId()), chat.ID(r.GetAfter()), int(r.GetLimit()))
	if err != nil {
		return nil, err
	}
	out := make([]*pb.User, len(users))
	for i, u := range users {
		out[i] = userToPB(u)
	}
	return &pb.ListMembersResponse{Users: out}, nil
}

func (s *roomServer) CheckAccess(ctx context.Context, r *pb.CheckAccessRequest) (*pb.CheckAccessResponse, error) {
	if err := s.svc.CheckAccess(ctx, chat.ID(r.GetUserId()), chat.ID(r.GetRoomId())); err != nil {
		return nil, err
	}
	return &pb.CheckAccessResponse{}, nil
}

func (s *roomServer) ReadableRooms(ctx context.Context, r *pb.ReadableRoomsRequest) (*pb.ReadableRoomsResponse, error) {
	ids, err := s.svc.ReadableRooms(ctx, chat.ID(r.GetUserId()))
	if err != nil {
		return nil, err
	}
	out, isNil := idsToPB(ids)
	return &pb.ReadableRoomsResponse{RoomIds: out, RoomIdsNil: isNil}, nil
}

type queryServer struct {
	pb.UnimplementedQueryServiceServer
	svc chat.QueryService
}

func (s *queryServer) Latest(ctx context.Context, r *pb.LatestRequest) (*pb.MessagesResponse, error) {
	msgs, err := s.svc.Latest(ctx, chat.ID(r.GetUserId()), chat.ID(r.GetRoomId()), chat.ID(r.GetBefore()), int(r.GetLimit()))
	if err != nil {
		return nil, err
	}
	out, isNil := messagesToPB(msgs)
	return &pb.MessagesResponse{Messages: out, MessagesNil: isNil}, nil
}

func (s *queryServer) Since(ctx context.Context, r *pb.SinceRequest) (*pb.MessagesResponse, error) {
	msgs, truncated, err := s.svc.Since(ctx, chat.ID(r.GetUserId()), chat.ID(r.GetRoomId()), chat.ID(r.GetSince()), int(r.GetLimit()))
	if err != nil {
		return nil, err
	}
	out, isNil := messagesToPB(msgs)
	return &pb.MessagesResponse{Messages: out, MessagesNil: isNil, Truncated: truncated}, nil
}

func (s *queryServer) History(ctx context.Context, r *pb.HistoryRequest) (*pb.HistoryPage, error) {
	page, err := s.svc.History(ctx, chat.ID(r.GetUserId()), chat.HistoryQuery{
		RoomID: chat.ID(r.GetRoomId()),
		From:   fromTS(r.GetFrom()),
		To:     fromTS(r.GetTo()),
		Limit:  int(r.GetLimit()),
		Cursor: string(r.GetCursor()),
	})
	if err != nil {
		return nil, err
	}
	out, isNil := messagesToPB(page.Messages)
	return &pb.HistoryPage{Messages: out, MessagesNil: isNil, NextCursor: []byte(page.NextCursor)}, nil
}

func (s *queryServer) Search(ctx context.Context, r *pb.SearchRequest) (*pb.SearchResult, error) {
	res, err := s.svc.Search(ctx, chat.ID(r.GetUserId()), chat.SearchQuery{
		Text:    string(r.GetText()),
		RoomIDs: idsFromPB(r.GetRoomIds(), r.GetRoomIdsNil()),
		UserID:  chat.ID(r.GetFilterUserId()),
		From:    fromTS(r.GetFrom()),
		To:      fromTS(r.GetTo()),
		Limit:   int(r.GetLimit()),
		Cursor:  string(r.GetCursor()),
	})
	if err != nil {
		return nil, err
	}
	hits, isNil := hitsToPB(res.Hits)
	return &pb.SearchResult{Hits: hits, HitsNil: isNil, Total: res.Total, TotalRelation: res.TotalRelation, NextCursor: []byte(res.NextCursor)}, nil
}

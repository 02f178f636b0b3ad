package rpc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/chatd/chatd/pkg/chat"
	pb "github.com/chatd/chatd/pkg/rpc/chatdv1"
)

// ClientConfig configures the connection to one role's servers.
type ClientConfig struct {
	// Timeout bounds each call, including the wait for a peer that is not
	// up yet; a caller's earlier deadline wins. Default 5s.
	Timeout time.Duration
	// TLS, if set, dials with TLS; nil dials plaintext, for a private network.
	TLS *tls.Config
	// MaxRecvBytes bounds one reply. Default 64 MiB: a Since replay of 1,000
	// messages of 4,000 four-byte characters is 16 MB.
	MaxRecvBytes int
	// MaxBackoff caps the wait between reconnect attempts, so a restarted
	// peer is found again within it. Default 2s.
	MaxBackoff time.Duration
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxRecvBytes <= 0 {
		c.MaxRecvBytes = 64 << 20
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 2 * time.Second
	}
	return c
}

// Client is a connection to the servers of one target (every address its
// name resolves to, balanced round robin). It is safe for concurrent use.
type Client struct {
	cfg  ClientConfig
	conn *grpc.ClientConn
	log  *slog.Logger
}

// idempotentMethods may be retried when the peer answers UNAVAILABLE: running
// one twice changes nothing. Writes are never retried by gRPC, since a
// request that reached the server before the failure would run twice.
var idempotentMethods = map[string][]string{
	"chatd.v1.UserService":  {"Authenticate", "GetUser", "GetUserByName", "Logout"},
	"chatd.v1.RoomService":  {"GetRoom", "ListRooms", "CheckAccess", "ReadableRooms"},
	"chatd.v1.QueryService": {"Latest", "Since", "History", "Search"},
}

// serviceConfig builds the gRPC service config: round robin over every
// resolved address, wait-for-ready everywhere (a late peer means waiting up
// to the deadline, not failing at once), and retries on UNAVAILABLE for the
// idempotent methods.
func serviceConfig() string {
	type name struct {
		Service string `json:"service"`
		Method  string `json:"method,omitempty"`
	}
	type retry struct {
		MaxAttempts          int      `json:"maxAttempts"`
		InitialBackoff       string   `json:"initialBackoff"`
		MaxBackoff           string   `json:"maxBackoff"`
		BackoffMultiplier    float64  `json:"backoffMultiplier"`
		RetryableStatusCodes []string `json:"retryableStatusCodes"`
	}
	type method struct {
		Name         []name `json:"name"`
		WaitForReady bool   `json:"waitForReady"`
		RetryPolicy  *retry `json:"retryPolicy,omitempty"`
	}
	var reads, all []name
	for svc, methods := range idempotentMethods {
		all = append(all, name{Service: svc})
		for _, m := range methods {
			reads = append(reads, name{Service: svc, Method: m})
		}
	}
	cfg := map[string]any{
		"loadBalancingConfig": []any{map[string]any{"round_robin": map[string]any{}}},
		"methodConfig": []method{
			{Name: all, WaitForReady: true},
			{Name: reads, WaitForReady: true, RetryPolicy: &retry{
				MaxAttempts: 4, InitialBackoff: "0.1s", MaxBackoff: "1s", BackoffMultiplier: 2,
				RetryableStatusCodes: []string{"UNAVAILABLE"},
			}},
		},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err) // static data
	}
	return string(b)
}

// Dial returns a client for target: "host:port" (resolved through DNS, every
// address used), or any gRPC target URI such as "dns:///room:9090". It does
// not connect: the connection is made on first use and re-made whenever it
// breaks, so a peer that is not up yet is not an error here, and the
// returned client is never nil when err is nil.
func Dial(ctx context.Context, target string, cfg ClientConfig, log *slog.Logger) (*Client, error) {
	_ = ctx // connecting is lazy; kept for symmetry with other constructors
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if target == "" {
		return nil, chat.Errorf(chat.EINVALID, "grpc target is empty")
	}
	if !strings.Contains(target, "://") {
		// grpc.NewClient resolves through DNS by default; saying so keeps
		// that true whatever the global default scheme is set to.
		target = "dns:///" + target
	}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(serviceConfig()),
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true), grpc.MaxCallRecvMsgSize(cfg.MaxRecvBytes)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: cfg.MaxBackoff},
			MinConnectTimeout: 5 * time.Second,
		}),
		// Finds a dead peer (a host gone without closing its sockets) in
		// about 40s instead of the kernel's hours. The server permits it.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
	)
	if err != nil {
		return nil, fmt.Errorf("grpc client %s: %w", target, err)
	}
	return &Client{cfg: cfg, conn: conn, log: log.With("component", "grpc_client", "target", target)}, nil
}

// Close closes the connection; calls in flight fail with EUNAVAILABLE.
func (c *Client) Close() error { return c.conn.Close() }

// Users returns the user role behind this connection.
func (c *Client) Users() chat.UserService {
	return &userClient{c: c, rpc: pb.NewUserServiceClient(c.conn)}
}

// Rooms returns the room role behind this connection.
func (c *Client) Rooms() chat.RoomService {
	return &roomClient{c: c, rpc: pb.NewRoomServiceClient(c.conn)}
}

// Query returns the query role behind this connection.
func (c *Client) Query() chat.QueryService {
	return &queryClient{c: c, rpc: pb.NewQueryServiceClient(c.conn)}
}

// call bounds ctx by the configured timeout.
func (c *Client) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

var (
	_ chat.UserService  = (*userClient)(nil)
	_ chat.RoomService  = (*roomClient)(nil)
	_ chat.QueryService = (*queryClient)(nil)
)

const (
	userSvc  = "user service"
	roomSvc  = "room service"
	querySvc = "query service"
)

type userClient struct {
	c   *Client
	rpc pb.UserServiceClient
}

func (u *userClient) Register(ctx context.Context, username, password, displayName, email string) (chat.User, error) {
	ctx, cancel := u.c.call(ctx)
	defer cancel()
	p, err := u.rpc.Register(ctx, &pb.RegisterRequest{Username: []byte(username), Password: []byte(password), DisplayName: []byte(displayName), Email: []byte(email)})
	if err != nil {
		return chat.User{}, fromStatus(ctx, userSvc, err)
	}
	return userFromPB(p), nil
}

func (u *userClient) Login(ctx context.Context, username, password string) (string, chat.Session, chat.User, error) {
	ctx, cancel := u.c.call(ctx)
	defer cancel()
	p, err := u.rpc.Login(ctx, &pb.LoginRequest{Username: []byte(username), Password: []byte(password)})
	if err != nil {
		return "", chat.Session{}, chat.User{}, fromStatus(ctx, userSvc, err)
	}
	return p.GetToken(), sessionFromPB(p.GetSession()), userFromPB(p.GetUser()), nil
}

func (u *userClient) Logout(ctx context.Context, tokenHash string) error {
	ctx, cancel := u.c.call(ctx)
	defer cancel()
	if _, err := u.rpc.Logout(ctx, &pb.LogoutRequest{TokenHash: []byte(tokenHash)}); err != nil {
		return fromStatus(ctx, userSvc, err)
	}
	return nil
}

func (u *userClient) Authenticate(ctx context.Context, token string) (chat.Caller, error) {
	ctx, cancel := u.c.call(ctx)
	defer cancel()
	p, err := u.rpc.Authenticate(ctx, &pb.AuthenticateRequest{Token: []byte(token)})
	if err != nil {
		return chat.Caller{}, fromStatus(ctx, userSvc, err)
	}
	return callerFromPB(p), nil
}

func (u *userClient) User(ctx context.Context, id chat.ID) (chat.User, error) {
	ctx, cancel := u.c.call(ctx)
	defer cancel()
	p, err := u.rpc.GetUser(ctx, &pb.GetUserRequest{Id: int64(id)})
	if err != nil {
		return chat.User{}, fromStatus(ctx, userSvc, err)
	}
	return userFromPB(p), nil
}

func (u *userClient) UserByName(ctx context.Context, username string) (chat.User, error) {
	ctx, cancel := u.c.call(ctx)
	defer cancel()
	p, err := u.rpc.GetUserByName(ctx, &pb.GetUserByNameRequest{Username: []byte(username)})
	if err != nil {
		return chat.User{}, fromStatus(ctx, userSvc, err)
	}
	return userFromPB(p), nil
}

type roomClient struct {
	c   *Client
	rpc pb.RoomServiceClient
}

func (r *roomClient) CreateRoom(ctx context.Context, caller chat.ID, name, description string, private bool) (chat.Room, error) {
	ctx, cancel := r.c.call(ctx)
	defer cancel()
	p, err := r.rpc.CreateRoom(ctx, &pb.CreateRoomRequest{Caller: int64(caller), Name: []byte(name), Description: []byte(description), Private: private})
	if err != nil {
		return chat.Room{}, fromStatus(ctx, roomSvc, err)
	}
	return roomFromPB(p), nil
}

func (r *roomClient) Room(ctx context.Context, caller, roomID chat.ID) (chat.Room, error) {
	ctx, cancel := r.c.call(ctx)
	defer cancel()
	p, err := r.rpc.GetRoom(ctx, &pb.GetRoomRequest{Caller: int64(caller), RoomId: int64(roomID)})
	if err != nil {
		return chat.Room{}, fromStatus(ctx, roomSvc, err)
	}
	return roomFromPB(p), nil
}

func (r *roomClient) ListRooms(ctx context.Context, caller chat.ID) ([]chat.Room, error) {
	ctx, cancel := r.c.call(ctx)
	defer cancel()
	p, err := r.rpc.ListRooms(ctx, &pb.ListRoomsRequest{Caller: int64(caller)})
	if err != nil {
		return nil, fromStatus(ctx, roomSvc, err)
	}
	return roomsFromPB(p.GetRooms(), p.GetRoomsNil()), nil
}

func (r *roomClient) UpdateRoom(ctx context.Context, caller, roomID chat.ID, u chat.RoomUpdate) (chat.Room, error) {
	ctx, cancel := r.c.call(ctx)
	defer cancel()
	p, err := r.rpc.UpdateRoom(ctx, &pb.UpdateRoomRequest{Caller: int64(caller), RoomId: int64(roomID), Name: optBytes(u.Name), Description: optBytes(u.Description)})
	if err != nil {
		return chat.Room{}, fromStatus(ctx, roomSvc, err)
	}
	return roomFromPB(p), nil
}

func (r *roomClient) DeleteRoom(ctx context.Context, caller, roomID chat.ID) error {
	ctx, cancel := r.c.call(ctx)
	defer cancel()
	if _, err := r.rpc.DeleteRoom(ctx, &pb.DeleteRoomRequest{Caller: int64(caller), RoomId: int64(roomID)}); err != nil {
		return fromStatus(ctx, roomSvc, err)
	}
	return nil
}

func (r *roomClient) AddMember(ctx context.Context, caller, roomID chat.ID, username string) error {
	ctx, cancel := r.c.call(ctx)
	defer cancel()
	if _, err := r.rpc.AddMember(ctx, &pb.AddMemberRequest{Caller: int64(caller), RoomId: int64(roomID), Username: []byte(username)}); err != nil {
		return fromStatus(ctx, roomSvc, err)
	}
	return nil
}

func (r *roomClient) RemoveMember(ctx context.Context, caller, roomID, userID chat.ID) error {
	ctx, cancel := r.c.call(ctx)
	defer cancel()
	if _, err := r.rpc.RemoveMember(ctx, &pb.RemoveMemberRequest{Caller: int64(caller), RoomId: int64(roomID), UserId: int64(userID)}); err != nil {
		return fromStatus(ctx, roomSvc, err)
	}
	return nil
}

func (r *roomClient) Members(ctx context.Context, caller, roomID, after chat.ID, limit int) ([]chat.User, error) {
	ctx, cancel := r.c.call(ctx)
	defer cancel()
	p, err := r.rpc.ListMembers(ctx, &pb.ListMembersRequest{Caller: int64(caller), RoomId: int64(roomID), After: int64(after), Limit: int32(limit)})
	if err != nil {
		return nil, fromStatus(ctx, roomSvc, err)
	}
	users := make([]chat.User, len(p.GetUsers()))
	for i, u := range p.GetUsers() {
		users[i] = userFromPB(u)
	}
	return users, nil
}

func (r *roomClient) CheckAccess(ctx context.Context, userID, roomID chat.ID) error {
	ctx, cancel := r.c.call(ctx)
	defer cancel()
	if _, err := r.rpc.CheckAccess(ctx, &pb.CheckAccessRequest{UserId: int64(userID), RoomId: int64(roomID)}); err != nil {
		return fromStatus(ctx, roomSvc, err)
	}
	return nil
}

func (r *roomClient) ReadableRooms(ctx context.Context, userID chat.ID) ([]chat.ID, error) {
	ctx, cancel := r.c.call(ctx)
	defer cancel()
	p, err := r.rpc.ReadableRooms(ctx, &pb.ReadableRoomsRequest{UserId: int64(userID)})
	if err != nil {
		return nil, fromStatus(ctx, roomSvc, err)
	}
	return idsFromPB(p.GetRoomIds(), p.GetRoomIdsNil()), nil
}

type queryClient struct {
	c   *Client
	rpc pb.QueryServiceClient
}

func (q *queryClient) Latest(ctx context.Context, userID, roomID, before chat.ID, limit int) ([]chat.Message, error) {
	ctx, cancel := q.c.call(ctx)
	defer cancel()
	p, err := q.rpc.Latest(ctx, &pb.LatestRequest{UserId: int64(userID), RoomId: int64(roomID), Before: int64(before), Limit: int64(limit)})
	if err != nil {
		return nil, fromStatus(ctx, querySvc, err)
	}
	return messagesFromPB(p.GetMessages(), p.GetMessagesNil()), nil
}

func (q *queryClient) Since(ctx context.Context, userID, roomID, since chat.ID, limit int) ([]chat.Message, bool, error) {
	ctx, cancel := q.c.call(ctx)
	defer cancel()
	p, err := q.rpc.Since(ctx, &pb.SinceRequest{UserId: int64(userID), RoomId: int64(roomID), Since: int64(since), Limit: int64(limit)})
	if err != nil {
		return nil, false, fromStatus(ctx, querySvc, err)
	}
	return messagesFromPB(p.GetMessages(), p.GetMessagesNil()), p.GetTruncated(), nil
}

func (q *queryClient) History(ctx context.Context, userID chat.ID, hq chat.HistoryQuery) (chat.HistoryPage, error) {
	ctx, cancel := q.c.call(ctx)
	defer cancel()
	p, err := q.rpc.History(ctx, &pb.HistoryRequest{
		UserId: int64(userID), RoomId: int64(hq.RoomID), From: ts(hq.From), To: ts(hq.To), Limit: int64(hq.Limit), Cursor: []byte(hq.Cursor),
	})
	if err != nil {
		return chat.HistoryPage{}, fromStatus(ctx, querySvc, err)
	}
	return chat.HistoryPage{Messages: messagesFromPB(p.GetMessages(), p.GetMessagesNil()), NextCursor: string(p.GetNextCursor())}, nil
}

func (q *queryClient) Search(ctx context.Context, userID chat.ID, sq chat.SearchQuery) (chat.SearchResult, error) {
	ctx, cancel := q.c.call(ctx)
	defer cancel()
	ids, idsNil := idsToPB(sq.RoomIDs)
	p, err := q.rpc.Search(ctx, &pb.SearchRequest{
		UserId: int64(userID), Text: []byte(sq.Text), RoomIds: ids, RoomIdsNil: idsNil, FilterUserId: int64(sq.UserID),
		From: ts(sq.From), To: ts(sq.To), Limit: int64(sq.Limit), Cursor: []byte(sq.Cursor),
	})
	if err != nil {
		return chat.SearchResult{}, fromStatus(ctx, querySvc, err)
	}
	return chat.SearchResult{Hits: hitsFromPB(p.GetHits(), p.GetHitsNil()), Total: p.GetTotal(), TotalRelation: p.GetTotalRelation(), NextCursor: string(p.GetNextCursor())}, nil
}

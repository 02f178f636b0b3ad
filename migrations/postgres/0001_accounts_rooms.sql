-- Users, sessions, rooms and memberships: the state of the user and room roles.
--
-- Times are stored as timestamptz (readable, indexable) plus the nanoseconds
-- below the microsecond that timestamptz cannot hold, so a time read back is
-- exactly the time written, as with every other backend.
--
-- There are no foreign keys from sessions, rooms or memberships to users: the
-- user and room roles may be deployed against different databases, and a
-- user ID is only a number to the room role.

CREATE TABLE users (
    id            bigint      PRIMARY KEY,
    username      text        NOT NULL,
    display_name  text        NOT NULL DEFAULT '',
    email         text        NOT NULL DEFAULT '',
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL,
    created_ns    smallint    NOT NULL DEFAULT 0,
    CONSTRAINT users_username_key UNIQUE (username)
);

CREATE TABLE sessions (
    token_hash text        PRIMARY KEY,
    user_id    bigint      NOT NULL,
    created_at timestamptz NOT NULL,
    created_ns smallint    NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL,
    expires_ns smallint    NOT NULL DEFAULT 0
);

-- DeleteExpiredSessions scans by expiry.
CREATE INDEX sessions_expires_idx ON sessions (expires_at, expires_ns);

CREATE TABLE rooms (
    id          bigint      PRIMARY KEY,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    private     boolean     NOT NULL DEFAULT false,
    owner_id    bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    created_ns  smallint    NOT NULL DEFAULT 0
);

-- ListRooms reads the public rooms on every call.
CREATE INDEX rooms_public_idx ON rooms (id) WHERE NOT private;

CREATE TABLE room_members (
    room_id bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id bigint NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- ListRooms and ReadableRooms look memberships up by user.
CREATE INDEX room_members_user_idx ON room_members (user_id, room_id);

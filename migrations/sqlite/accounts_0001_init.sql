-- Users, sessions, rooms and memberships: the user and room roles.
-- Times are unix nanoseconds (UTC); IDs are chat.ID Snowflakes.

CREATE TABLE users (
	id            INTEGER PRIMARY KEY,
	-- Unique exactly as given; the API only admits lower case anyway.
	username      TEXT    NOT NULL UNIQUE,
	display_name  TEXT    NOT NULL DEFAULT '',
	email         TEXT    NOT NULL DEFAULT '',
	password_hash TEXT    NOT NULL,
	created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
	token_hash TEXT    PRIMARY KEY,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- DeleteExpiredSessions scans by expiry instead of the whole table.
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_user_id ON sessions (user_id);

-- owner_id has no foreign key: the room role may run against a different
-- account store than the user role.
CREATE TABLE rooms (
	id          INTEGER PRIMARY KEY,
	name        TEXT    NOT NULL,
	description TEXT    NOT NULL DEFAULT '',
	private     INTEGER NOT NULL DEFAULT 0,
	owner_id    INTEGER NOT NULL,
	created_at  INTEGER NOT NULL
);

-- Listing rooms reads public ones by this index, not by scanning all rooms.
CREATE INDEX rooms_private ON rooms (private, id);

CREATE TABLE members (
	room_id INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
	user_id INTEGER NOT NULL,
	PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;

CREATE INDEX members_user_id ON members (user_id, room_id);

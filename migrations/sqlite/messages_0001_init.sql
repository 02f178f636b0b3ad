-- The message store: latest messages of a room and paging by ID.
-- Clustered by (room_id, id) WITHOUT ROWID, so the latest N messages of a
-- room are one range scan of the primary key with the rows in it.
CREATE TABLE messages (
	room_id    INTEGER NOT NULL,
	id         INTEGER NOT NULL,
	user_id    INTEGER NOT NULL,
	username   TEXT    NOT NULL,
	body       TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	nonce      TEXT    NOT NULL DEFAULT '',
	edited_at  INTEGER,
	PRIMARY KEY (room_id, id)
) WITHOUT ROWID;

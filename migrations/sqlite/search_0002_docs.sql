-- Search checks every full-text match against the room, user and time
-- filters. Looked up in messages, whose rows carry the bodies, that cost
-- about a hundred times the full-text step itself; this narrow table holds
-- only what the filters need, so its pages stay in cache.
CREATE TABLE docs (
	id      INTEGER PRIMARY KEY,
	room_id INTEGER NOT NULL,
	user_id INTEGER NOT NULL
);

INSERT INTO docs (id, room_id, user_id) SELECT id, room_id, user_id FROM messages;

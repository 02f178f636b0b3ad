-- The search index: history by time range and full-text search.
-- The rowid is the message ID, which both orders history and joins the
-- full-text table.
CREATE TABLE messages (
	id         INTEGER PRIMARY KEY,
	room_id    INTEGER NOT NULL,
	user_id    INTEGER NOT NULL,
	username   TEXT    NOT NULL,
	body       TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	nonce      TEXT    NOT NULL DEFAULT '',
	edited_at  INTEGER
);

CREATE INDEX messages_room_id ON messages (room_id, id);

-- Contentless: the text indexed is not the body but chat.SearchWords of it
-- joined by spaces, and the ascii tokenizer splits that on the spaces alone
-- (it treats every non-ASCII character as part of a word). So the index holds
-- exactly the words chat.ParseSearch asks for and chat.Highlight marks, and
-- SQLite's own idea of Unicode words never disagrees with them. The rowid is
-- the message ID, so a time range is a rowid range FTS5 applies itself. The
-- prefix indexes keep short prefix* queries from scanning the vocabulary.
CREATE VIRTUAL TABLE messages_fts USING fts5 (
	words,
	content = '',
	tokenize = 'ascii',
	prefix = '2 3'
);

-- Search reads only what it returns. Before, every match of the query was
-- looked up in docs for its room and ranked with bm25, so a common word cost
-- a full scan of its matches and a lookup each (0.6-2 s over a million
-- messages). Now the room and author filters are inside the full-text index
-- and search ranks only the newest matches (see Search.Search); docs stays for
-- a search in many rooms that also leaves many out, where an OR of that many
-- rooms' words costs more than checking each match's room:
--
-- words       the message's words (chat.SearchWords joined by spaces), as before;
-- room_words  the same words, each prefixed by "<n>x" where n is the room's
--             number in rooms: the words of one room are their own terms, so a
--             search in a few rooms reads only those rooms' matches;
-- author      the author's user ID, so the user filter is one more term.
--
-- Room numbers are small integers rather than room IDs so the tokens stay
-- short. A room number holds digits only, so the first "x" of a token ends
-- it and "5x12" (room 5, word "12") never equals a token of room 51.
CREATE TABLE rooms (
	n       INTEGER PRIMARY KEY,
	room_id INTEGER NOT NULL UNIQUE
);

INSERT INTO rooms (room_id) SELECT DISTINCT room_id FROM messages ORDER BY room_id;

CREATE VIRTUAL TABLE search_fts USING fts5 (
	words,
	room_words,
	author,
	content = '',
	tokenize = 'ascii',
	prefix = '2 3'
);

-- chatd_search_words and chatd_room_words are Go functions registered by
-- pkg/sqlite; they build the same text IndexMessages does.
INSERT INTO search_fts (rowid, words, room_words, author)
	SELECT m.id, chatd_search_words(m.body), chatd_room_words(r.n, m.body), m.user_id
	FROM messages m JOIN rooms r ON r.room_id = m.room_id ORDER BY m.id;

DROP TABLE messages_fts;

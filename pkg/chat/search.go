package chat

import (
	"html"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxSearchTerms bounds the terms of one query, so a query cannot make a
// backend evaluate an arbitrarily large boolean expression.
const MaxSearchTerms = 16

// SearchTerm is one term of a parsed search query. Every term must match.
type SearchTerm struct {
	// Words are lower-cased; for a phrase they must appear consecutively in
	// this order.
	Words []string
	// Phrase is set for a "quoted phrase", and for an unquoted token that
	// splits into several words (e-mail, don't), which reads as one phrase.
	Phrase bool
	// Prefix is set for word*: the last word matches any word starting with it.
	Prefix bool
}

// ParseSearch parses the user search syntax of API.md: whitespace-separated
// words (all must match), "quoted phrases" and prefix*. Words are runs of
// Unicode letters and digits, lower-cased; everything else separates words,
// so the grammar has no other operators and backend query syntax (AND,
// NEAR(, -x, col:val, ^) typed by a user is only text. An unbalanced quote
// makes a phrase to the end. EINVALID if nothing searchable remains, the query
// is longer than MaxSearchLen bytes, not valid UTF-8, or has more than
// MaxSearchTerms terms.
func ParseSearch(q string) ([]SearchTerm, error) {
	if len(q) > MaxSearchLen {
		return nil, Errorf(EINVALID, "search query must be at most %d bytes", MaxSearchLen)
	}
	if !utf8.ValidString(q) {
		return nil, Errorf(EINVALID, "search query must be valid UTF-8")
	}
	var terms []SearchTerm
	add := func(text string, phrase, prefix bool) {
		words := SearchWords(text)
		if len(words) == 0 {
			return
		}
		terms = append(terms, SearchTerm{Words: words, Phrase: phrase || len(words) > 1, Prefix: prefix})
	}
	for i := 0; i < len(q); {
		r, size := utf8.DecodeRuneInString(q[i:])
		switch {
		case unicode.IsSpace(r):
			i += size
		case r == '"':
			end := strings.IndexByte(q[i+1:], '"')
			var text string
			if end < 0 {
				text, i = q[i+1:], len(q)
			} else {
				text, i = q[i+1:i+1+end], i+1+end+1
			}
			prefix := false
			if i < len(q) && q[i] == '*' {
				prefix = true
			}
			add(text, true, prefix)
		default:
			// An unquoted token runs to the next space or quote.
			j := i
			for j < len(q) {
				r, size := utf8.DecodeRuneInString(q[j:])
				if unicode.IsSpace(r) || r == '"' {
					break
				}
				j += size
			}
			tok := q[i:j]
			i = j
			trimmed := strings.TrimRight(tok, "*")
			add(trimmed, false, len(trimmed) < len(tok))
		}
		if len(terms) > MaxSearchTerms {
			return nil, Errorf(EINVALID, "search query must have at most %d terms", MaxSearchTerms)
		}
	}
	if len(terms) == 0 {
		return nil, Errorf(EINVALID, "search query has no words")
	}
	return terms, nil
}

// SearchWords returns the words of s as the search grammar sees them: runs of
// Unicode letters and digits, lower-cased. A backend that indexes these words
// (rather than its own analysis of the body) matches exactly what ParseSearch
// asks for and Highlight marks.
func SearchWords(s string) []string {
	spans := wordSpans(s)
	words := make([]string, len(spans))
	for i, sp := range spans {
		words[i] = strings.ToLower(s[sp[0]:sp[1]])
	}
	return words
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// wordSpans returns the byte ranges of the words of s.
func wordSpans(s string) [][2]int { return appendWordSpans(nil, s) }

// appendWordSpans appends the byte ranges of the words of s to spans.
// Invalid UTF-8 bytes decode as RuneError, which is not a letter, so they
// only separate words.
func appendWordSpans(spans [][2]int, s string) [][2]int {
	start := -1
	for i, r := range s {
		if isWordRune(r) {
			if start < 0 {
				start = i
			}
		} else if start >= 0 {
			spans = append(spans, [2]int{start, i})
			start = -1
		}
	}
	if start >= 0 {
		spans = append(spans, [2]int{start, len(s)})
	}
	return spans
}

// CountTerms adds to tf[i] how many times terms[i] matches in body (the
// matches Highlight marks) and returns body's word spans, appended to
// spans[:0]: their number is body's length in words, and a caller counting
// many bodies passes the last result back to reuse its memory. It compares
// words in place, allocating only for a word that is not ASCII.
func CountTerms(body string, terms []SearchTerm, tf []int, spans [][2]int) [][2]int {
	spans = appendWordSpans(spans[:0], body)
	for i, t := range terms {
		for at := 0; at+len(t.Words) <= len(spans); at++ {
			if termMatchesAt(t, body, spans, at) {
				tf[i]++
			}
		}
	}
	return spans
}

// Highlight returns body HTML-escaped with every match of terms wrapped in
// <mark>…</mark>: a word equal to a word term (case-insensitively), a word
// starting with a prefix term, the run of words matching a phrase. Matches
// that overlap share one mark, so marks never nest. It splits words
// exactly as ParseSearch does, so what is marked is what matched.
func Highlight(body string, terms []SearchTerm) string {
	spans := wordSpans(body)
	// end[i] is one past the last word of the longest match starting at word
	// i, or 0 if none starts there.
	end := make([]int, len(spans))
	for _, t := range terms {
		n := len(t.Words)
		if n == 0 {
			continue
		}
		for i := 0; i+n <= len(spans); i++ {
			if termMatchesAt(t, body, spans, i) && i+n > end[i] {
				end[i] = i + n
			}
		}
	}
	var b strings.Builder
	b.Grow(len(body) + len(body)/8)
	pos := 0
	for i := 0; i < len(spans); i++ {
		if end[i] == 0 {
			continue
		}
		// Extend the run over every match that starts inside it.
		last := end[i]
		j := i + 1
		for ; j < len(spans) && j < last; j++ {
			if end[j] > last {
				last = end[j]
			}
		}
		start, stop := spans[i][0], spans[last-1][1]
		b.WriteString(html.EscapeString(body[pos:start]))
		b.WriteString("<mark>")
		b.WriteString(html.EscapeString(body[start:stop]))
		b.WriteString("</mark>")
		pos = stop
		i = last - 1
	}
	b.WriteString(html.EscapeString(body[pos:]))
	return b.String()
}

// termMatchesAt reports whether t matches the words of body from spans[i]:
// each word, lower-cased, equal to the term's, the last a prefix of it for
// a prefix term.
func termMatchesAt(t SearchTerm, body string, spans [][2]int, i int) bool {
	n := len(t.Words)
	for k, w := range t.Words {
		got := body[spans[i+k][0]:spans[i+k][1]]
		if !lowerMatches(got, w, k == n-1 && t.Prefix) {
			return false
		}
	}
	return true
}

// lowerMatches reports whether strings.ToLower(word) equals w, or for a
// prefix starts with it, without allocating when word is ASCII.
func lowerMatches(word, w string, prefix bool) bool {
	for i := 0; i < len(word); i++ {
		if word[i] >= utf8.RuneSelf {
			lw := strings.ToLower(word)
			if prefix {
				return strings.HasPrefix(lw, w)
			}
			return lw == w
		}
	}
	if prefix {
		if len(word) < len(w) {
			return false
		}
		word = word[:len(w)]
	} else if len(word) != len(w) {
		return false
	}
	for i := 0; i < len(w); i++ {
		c := word[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[i] {
			return false
		}
	}
	return true
}

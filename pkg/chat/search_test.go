package chat_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/chatd/chatd/pkg/chat"
)

func TestParseSearch(t *testing.T) {
	w := func(words ...string) chat.SearchTerm { return chat.SearchTerm{Words: words} }
	ph := func(words ...string) chat.SearchTerm { return chat.SearchTerm{Words: words, Phrase: true} }
	pre := func(word string) chat.SearchTerm { return chat.SearchTerm{Words: []string{word}, Prefix: true} }
	tests := []struct {
		q    string
		want []chat.SearchTerm
	}{
		{"hello", []chat.SearchTerm{w("hello")}},
		{"  Hello   WORLD ", []chat.SearchTerm{w("hello"), w("world")}},
		{`"Quick Brown" fox`, []chat.SearchTerm{ph("quick", "brown"), w("fox")}},
		{`"single"`, []chat.SearchTerm{{Words: []string{"single"}, Phrase: true}}},
		{"deplo*", []chat.SearchTerm{pre("deplo")}},
		{"deplo**", []chat.SearchTerm{pre("deplo")}},
		{"*deplo", []chat.SearchTerm{w("deplo")}},
		{`"unbalanced phrase here`, []chat.SearchTerm{ph("unbalanced", "phrase", "here")}},
		{`"foo ba"*`, []chat.SearchTerm{{Words: []string{"foo", "ba"}, Phrase: true, Prefix: true}}},
		{"e-mail", []chat.SearchTerm{ph("e", "mail")}},
		{"a AND b", []chat.SearchTerm{w("a"), w("and"), w("b")}},
		// NEAR(a is one token that splits into two words: a phrase.
		{"NEAR(a b)", []chat.SearchTerm{ph("near", "a"), w("b")}},
		{"-x col:val ^y", []chat.SearchTerm{w("x"), ph("col", "val"), w("y")}},
		{"* foo", []chat.SearchTerm{w("foo")}},
		{"Ünïcödé ДОМ 東京", []chat.SearchTerm{w("ünïcödé"), w("дом"), w("東京")}},
		{"x2 42", []chat.SearchTerm{w("x2"), w("42")}},
	}
	for _, tc := range tests {
		got, err := chat.ParseSearch(tc.q)
		if err != nil {
			t.Errorf("ParseSearch(%q): %v", tc.q, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSearch(%q) = %+v, want %+v", tc.q, got, tc.want)
		}
	}
}

func TestParseSearchInvalid(t *testing.T) {
	bad := []string{
		"", "   ", `""`, `"`, "*", "***", "🎉🎉", "!@#$%^&()", "-- ;",
		strings.Repeat("a", chat.MaxSearchLen+1),
		"caf\xff\xfe",
		strings.Repeat("w ", chat.MaxSearchTerms+1),
	}
	for _, q := range bad {
		_, err := chat.ParseSearch(q)
		if code := chat.ErrorCode(err); code != chat.EINVALID {
			t.Errorf("ParseSearch(%.40q) code = %q, want %q", q, code, chat.EINVALID)
		}
	}
	if _, err := chat.ParseSearch(strings.Repeat("w ", chat.MaxSearchTerms)); err != nil {
		t.Errorf("%d terms: %v", chat.MaxSearchTerms, err)
	}
	if _, err := chat.ParseSearch(strings.Repeat("a", chat.MaxSearchLen)); err != nil {
		t.Errorf("%d bytes: %v", chat.MaxSearchLen, err)
	}
}

func TestHighlight(t *testing.T) {
	tests := []struct {
		body, q, want string
	}{
		{"Hello world", "hello", "<mark>Hello</mark> world"},
		{"hello HELLO hello", "Hello", "<mark>hello</mark> <mark>HELLO</mark> <mark>hello</mark>"},
		{"<img src=x onerror=alert(1)>", "img", "&lt;<mark>img</mark> src=x onerror=alert(1)&gt;"},
		{"<img src=x onerror=alert(1)>", "alert", "&lt;img src=x onerror=<mark>alert</mark>(1)&gt;"},
		{`<script>"x" & 'y'</script>`, "nothing", "&lt;script&gt;&#34;x&#34; &amp; &#39;y&#39;&lt;/script&gt;"},
		{"deploying deployed deploy", "deploy*", "<mark>deploying</mark> <mark>deployed</mark> <mark>deploy</mark>"},
		{"the quick brown fox, quick fox", `"quick brown"`, "the <mark>quick brown</mark> fox, quick fox"},
		{"a b c", `"a b" "b c"`, "<mark>a b c</mark>"},
		{"a b c", `a b`, "<mark>a</mark> <mark>b</mark> c"},
		{"foo foobar", `foo foo*`, "<mark>foo</mark> <mark>foobar</mark>"},
		{"party 🎉🎉 time", "party time", "<mark>party</mark> 🎉🎉 <mark>time</mark>"},
		{"🎉party🎉", "party", "🎉<mark>party</mark>🎉"},
		// A combining mark is not a letter: it separates words, and is kept
		// byte for byte outside the mark.
		{"cafe\u0301 ok", "cafe", "<mark>cafe</mark>\u0301 ok"},
		{"Café CAFÉ", "café", "<mark>Café</mark> <mark>CAFÉ</mark>"},
		{"שלום עולם", "עולם", "שלום <mark>עולם</mark>"},
		{"no match here", "zzz", "no match here"},
		{"", "x", ""},
		{"bad \xff byte", "byte", "bad \xff <mark>byte</mark>"},
	}
	for _, tc := range tests {
		terms, err := chat.ParseSearch(tc.q)
		if err != nil {
			t.Fatalf("ParseSearch(%q): %v", tc.q, err)
		}
		if got := chat.Highlight(tc.body, terms); got != tc.want {
			t.Errorf("Highlight(%q, %q) = %q, want %q", tc.body, tc.q, got, tc.want)
		}
	}
}

// Whatever the body, the highlight with its marks removed and unescaped is
// the body again, and it contains no markup but the marks.
func TestHighlightRoundTrip(t *testing.T) {
	terms, err := chat.ParseSearch(`a "b c" d* <mark>`)
	if err != nil {
		t.Fatal(err)
	}
	bodies := []string{
		"<mark>a</mark>", "a<b>c</b>d", "&amp; a & b c", `"'a'"`, "a\nb c\td\r\ndd",
		strings.Repeat("a b c d ", 500), "\u202eb c\u202c", "mark mark <mark",
	}
	for _, body := range bodies {
		h := chat.Highlight(body, terms)
		stripped := strings.NewReplacer("<mark>", "", "</mark>", "").Replace(h)
		if strings.ContainsAny(stripped, "<>\"'") {
			t.Errorf("Highlight(%.40q) leaves markup: %.80q", body, h)
		}
		if got := htmlUnescape(stripped); got != body {
			t.Errorf("Highlight(%.40q) loses text: %.80q", body, got)
		}
	}
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&#34;", `"`, "&#39;", "'", "&amp;", "&").Replace(s)
}

func TestSearchWords(t *testing.T) {
	got := chat.SearchWords("Hello, Wörld! x_y 42nd—end")
	want := []string{"hello", "wörld", "x", "y", "42nd", "end"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SearchWords = %q, want %q", got, want)
	}
}

func FuzzParseSearch(f *testing.F) {
	for _, s := range []string{"a", `"a b`, "x*", "NEAR(a,b)", "\xff", "a\"b\"*c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		terms, err := chat.ParseSearch(q)
		if err != nil {
			if chat.ErrorCode(err) != chat.EINVALID {
				t.Fatalf("code %q", chat.ErrorCode(err))
			}
			return
		}
		for _, term := range terms {
			if len(term.Words) == 0 {
				t.Fatal("empty term")
			}
			for _, w := range term.Words {
				if w == "" || strings.ContainsAny(w, "\"* ") {
					t.Fatalf("bad word %q", w)
				}
			}
		}
		_ = chat.Highlight(q, terms)
	})
}

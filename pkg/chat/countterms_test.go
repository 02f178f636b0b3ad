package chat

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// referenceCounts counts term matches the plain way: on the lower-cased
// words SearchWords makes, each a new string.
func referenceCounts(body string, terms []SearchTerm) ([]int, int) {
	words := SearchWords(body)
	tf := make([]int, len(terms))
	for i, t := range terms {
	next:
		for at := 0; at+len(t.Words) <= len(words); at++ {
			for k, w := range t.Words {
				got := words[at+k]
				if k == len(t.Words)-1 && t.Prefix {
					if !strings.HasPrefix(got, w) {
						continue next
					}
				} else if got != w {
					continue next
				}
			}
			tf[i]++
		}
	}
	return tf, len(words)
}

// TestCountTermsMatchesSearchWords checks the in-place comparison against
// SearchWords' words on bodies and queries built to differ where the two
// could: case, digits, underscores and other separators, prefixes longer
// than a word, phrases across separators, non-ASCII words on either side.
func TestCountTermsMatchesSearchWords(t *testing.T) {
	bodies := []string{
		"", "   ", "Hello", "hello HELLO hElLo", "hello, world! hello-world hello_world",
		"abc abcd ABCDE ab", "x1 X1 1x 10 100 1000", "don't stop: DON'T", "e-mail me at bob@example.com",
		"the the the", "tab\there\nnewline", "trailing word", "πλοίο hello", "İstanbul istanbul",
		"naïve cafe café", "emoji 🙂 hello", strings.Repeat("word ", 300),
	}
	queries := []string{"hello", "HELLO", "hel*", "hello world", `"hello world"`, "abc*", "abcdef*", "ab",
		"1x", "10*", "don't", "e-mail", "bob@example.com", "the the", "café", "istanbul", "πλοίο", "word*", "w*", "tab here"}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "A", "B", "1", " ", " ", "-", "_", ",", "é", "Z"}
	for range 300 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		bodies = append(bodies, b.String())
	}
	for range 100 {
		var b strings.Builder
		for range 1 + rng.IntN(4) {
			b.WriteString(alphabet[rng.IntN(5)])
		}
		if rng.IntN(3) == 0 {
			b.WriteString("*")
		}
		queries = append(queries, b.String())
	}
	var spans [][2]int
	checked := 0
	for _, q := range queries {
		terms, err := ParseSearch(q)
		if err != nil {
			continue
		}
		for _, body := range bodies {
			want, wantLen := referenceCounts(body, terms)
			got := make([]int, len(terms))
			spans = CountTerms(body, terms, got, spans)
			if len(spans) != wantLen || !slices.Equal(got, want) {
				t.Fatalf("query %q body %q: %v words %d, want %v words %d", q, body, got, len(spans), want, wantLen)
			}
			checked++
		}
	}
	if checked < 10000 {
		t.Fatalf("only %d comparisons", checked)
	}
}

package user

import (
	"strings"
	"sync"
	"testing"
)

func TestPasswordHashRoundTrip(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q", h)
	}
	if !CheckPassword(h, "correct horse") || CheckPassword(h, "correct horsE") || CheckPassword(h, "") {
		t.Fatal("CheckPassword does not tell the right password from wrong ones")
	}
}

// Stored hashes are parsed before use: a damaged or hostile one is a
// mismatch, never a panic or a huge allocation.
func TestCheckPasswordMalformedHashes(t *testing.T) {
	good, _ := HashPassword("pw")
	parts := strings.Split(good, "$")
	for _, h := range []string{
		"", "$", "plain", "$argon2i$" + strings.Join(parts[2:], "$"),
		"$argon2id$v=18$" + strings.Join(parts[3:], "$"),
		"$argon2id$v=19$m=4294967295,t=2,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=19456,t=1000,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=19456,t=2,p=0$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=19456,t=2,p=1$!!!$" + parts[5],
		"$argon2id$v=19$m=19456,t=2,p=1$" + parts[4] + "$",
		"$argon2id$v=19$m=19456,t=2,p=1$" + parts[4] + "$" + strings.Repeat("A", 400),
		good + "$extra",
	} {
		if CheckPassword(h, "pw") {
			t.Errorf("malformed hash %q accepted", h)
		}
	}
}

// Many hashes at once queue for the bounded slots and all come out right.
func TestPasswordHashConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			pw := strings.Repeat("p", i+1)
			h, err := HashPassword(pw)
			if err != nil || !CheckPassword(h, pw) || CheckPassword(h, pw+"x") {
				errs <- pw
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for pw := range errs {
		t.Errorf("hash of %q did not check", pw)
	}
	if n := len(hashSlots); n != 0 {
		t.Fatalf("%d hash slots still held", n)
	}
}

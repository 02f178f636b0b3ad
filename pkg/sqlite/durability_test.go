package sqlite_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/sqlite"
)

const killRoom, killCount = chat.ID(42), 500

// killMessages are what the killed process writes: deterministic, so the
// parent knows what to expect.
func killMessages() []chat.Message {
	base := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	msgs := make([]chat.Message, killCount)
	for i := range msgs {
		at := base.Add(time.Duration(i) * time.Millisecond)
		msgs[i] = chat.Message{ID: chat.MinIDAt(at) + 1, RoomID: killRoom, UserID: 1, Username: "u", Body: fmt.Sprintf("durable %d", i), CreatedAt: at}
	}
	return msgs
}

// TestKilledProcessHelper is the child of TestSurvivesKill: it writes, and
// once every write has returned it kills itself without closing anything.
func TestKilledProcessHelper(t *testing.T) {
	dir := os.Getenv("CHATD_KILL_DIR")
	if dir == "" {
		t.Skip("run by TestSurvivesKill")
	}
	ctx := context.Background()
	m, err := sqlite.OpenMessages(ctx, filepath.Join(dir, "messages.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.OpenSearch(ctx, filepath.Join(dir, "search.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := sqlite.OpenAccounts(ctx, filepath.Join(dir, "accounts.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs := killMessages()
	for i := 0; i < len(msgs); i += 50 {
		if err := m.WriteMessages(ctx, msgs[i:i+50]); err != nil {
			t.Fatal(err)
		}
		if err := s.IndexMessages(ctx, msgs[i:i+50]); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.CreateUser(ctx, chat.User{ID: 1, Username: "survivor", CreatedAt: time.Now()}, "h"); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// Acknowledged writes survive the process being killed (synchronous=NORMAL
// in WAL mode syncs at checkpoints, but the OS keeps what was written).
func TestSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledProcessHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CHATD_KILL_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die by SIGKILL: %v\n%s", err, out)
	}
	ctx := context.Background()
	m := openMessages(t, filepath.Join(dir, "messages.db"))
	got, err := m.MessagesAfter(ctx, killRoom, 0, 2*killCount)
	if err != nil || len(got) != killCount {
		t.Fatalf("after kill: %d messages, %v; want %d", len(got), err, killCount)
	}
	s := openSearch(t, filepath.Join(dir, "search.db"))
	res, err := s.Search(ctx, chat.SearchQuery{Text: "durable", RoomIDs: []chat.ID{killRoom}, Limit: 10})
	if err != nil || res.Total != killCount {
		t.Fatalf("after kill: search total %d, %v; want %d", res.Total, err, killCount)
	}
	a, err := sqlite.OpenAccounts(ctx, filepath.Join(dir, "accounts.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, _, err := a.UserByUsername(ctx, "survivor"); err != nil {
		t.Fatalf("after kill: %v", err)
	}
}

// Writers and readers of one store run at once without SQLITE_BUSY errors
// or lost writes; run with -race.
func TestConcurrentUse(t *testing.T) {
	m := openMessages(t, "")
	s := openSearch(t, "")
	ctx := context.Background()
	g, err := chat.NewIDGen(3)
	if err != nil {
		t.Fatal(err)
	}
	const writers, batches, per = 3, 4, 20
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range batches {
				batch := make([]chat.Message, per)
				for i := range batch {
					id, at := g.Next()
					batch[i] = chat.Message{ID: id, RoomID: chat.ID(w + 1), UserID: 1, Username: "u", Body: "concurrent word", CreatedAt: at}
				}
				if err := m.WriteMessages(ctx, batch); err != nil {
					errs <- err
				}
				if err := s.IndexMessages(ctx, batch); err != nil {
					errs <- err
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range batches {
				if _, err := m.MessagesBefore(ctx, chat.ID(w+1), 0, 50); err != nil {
					errs <- err
				}
				if _, err := s.Search(ctx, chat.SearchQuery{Text: "word", RoomIDs: []chat.ID{1, 2, 3, 4}, Limit: 10}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	res, err := s.Search(ctx, chat.SearchQuery{Text: "concurrent", RoomIDs: []chat.ID{1, 2, 3, 4}, Limit: 10})
	if err != nil || res.Total != writers*batches*per {
		t.Fatalf("search total %d, %v; want %d", res.Total, err, writers*batches*per)
	}
	for w := range writers {
		got, err := m.MessagesAfter(ctx, chat.ID(w+1), 0, 1000)
		if err != nil || len(got) != batches*per {
			t.Fatalf("room %d: %d messages, %v", w+1, len(got), err)
		}
	}
}

package sqlite

// SetRoomsPerQuery sets roomsPerQuery, for benchmarks comparing the query
// shapes; the returned func restores it.
func SetRoomsPerQuery(n int) (restore func()) {
	old := roomsPerQuery
	roomsPerQuery = n
	return func() { roomsPerQuery = old }
}

// WaitRoomCache waits until s's room cache has loaded (or given up) and
// returns how many messages it holds.
func WaitRoomCache(s *Search) int {
	if s.rc.done != nil {
		<-s.rc.done
	}
	return s.rc.snap.Load().len()
}

// DropRoomCache empties s's room cache, so searches check every room in
// docs as without it.
func DropRoomCache(s *Search) {
	s.rc.mu.Lock()
	defer s.rc.mu.Unlock()
	s.rc.snap.Store(&roomSnap{})
}

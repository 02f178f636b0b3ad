package sqlite

// SetRoomsPerQuery sets roomsPerQuery, for benchmarks comparing the query
// shapes; the returned func restores it.
func SetRoomsPerQuery(n int) (restore func()) {
	old := roomsPerQuery
	roomsPerQuery = n
	return func() { roomsPerQuery = old }
}

//go:build race

package testutil

// ThreadSanitizer maps its shadow memory at fixed addresses far above what a
// User-Mode Linux guest process can map, so race-enabled binaries cannot run
// there.
const raceEnabled = true

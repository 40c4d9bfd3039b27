// Package quiet silences standard output while the program's packages are
// initialised. A dependency of the eth backend (poly-go's test package)
// prints "pkg/test: using rootSeed …" to stdout in its init, which would
// pollute the output of perund's commands (e.g. `perund keys list`).
//
// Go initialises packages in import-path order among those whose imports
// are ready; this package needs nothing but the runtime and sorts before
// "polycry.pt/…", so its init runs first. main calls Restore.
package quiet

import "os"

var saved = redirect()

// Restore gives standard output back. Call it first thing in main.
func Restore() { restore(saved) }

func redirect() int {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return -1
	}
	defer devnull.Close()
	return swap(int(devnull.Fd()))
}

// Package faults holds named points inside mutating operations where a
// crash test can make a step fail, or kill the process as a power cut or
// an OOM kill would. The points are compiled in only with the
// thinlayer_faults build tag (make test sets it, as bbolt's gofail
// failpoints are); without it Point is an empty function the compiler
// inlines away, so no shipped binary reads THINLAYER_FAULT or can be made
// to kill itself.
//
// Each package owns its points: it names them in a file built with the tag
// that calls Register from init, so a walk can list every point of the
// packages it links.
package faults

import "errors"

// Env arms a point in a child process: "point=fail", "point=kill", or with
// the hit to act on, "point#3=kill" (the first hit when left out).
const Env = "THINLAYER_FAULT"

// Tag is the build tag that compiles the points in.
const Tag = "thinlayer_faults"

// ErrInjected is what an armed point set to fail returns.
var ErrInjected = errors.New("injected fault")

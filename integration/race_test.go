//go:build race

package integration

// raceEnabled: a -race test run builds fcgivisor with -race too, so a data
// race in fcgivisor fails the test that provoked it.
const raceEnabled = true

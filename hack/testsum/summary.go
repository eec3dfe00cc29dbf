package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

func readResults(path string) ([]result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var results []result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		results = append(results, r)
	}
	return results, sc.Err()
}

// Limits that keep the skip summary one readable line.
const (
	namesPerReason = 6   // then "and N more"
	reasonLen      = 120 // bytes of a reason shown
)

// summarize is the closing lines: the counts, then the skipped tests
// grouped by reason, in the order they were first seen.
func summarize(results []result) string {
	counts := map[string]int{}
	var reasons []string
	byReason := map[string][]string{}
	for _, r := range results {
		counts[r.Action]++
		if r.Action != "skip" {
			continue
		}
		reason := r.Reason
		if len(reason) > reasonLen {
			reason = reason[:reasonLen] + "..."
		}
		if _, ok := byReason[reason]; !ok {
			reasons = append(reasons, reason)
		}
		name := r.Test
		if r.Label != "" {
			name += " " + r.Label
		}
		byReason[reason] = append(byReason[reason], name)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "tests: %d passed, %d failed, %d skipped\n", counts["pass"], counts["fail"], counts["skip"])
	if counts["skip"] == 0 {
		b.WriteString("skipped: 0\n")
		return b.String()
	}
	var groups []string
	for _, reason := range reasons {
		names := byReason[reason]
		shown := strings.Join(names, ", ")
		if len(names) > namesPerReason {
			shown = fmt.Sprintf("%s and %d more", strings.Join(names[:namesPerReason], ", "), len(names)-namesPerReason)
		}
		groups = append(groups, fmt.Sprintf("%s (%s)", shown, reason))
	}
	fmt.Fprintf(&b, "skipped %d: %s\n", counts["skip"], strings.Join(groups, "; "))
	return b.String()
}

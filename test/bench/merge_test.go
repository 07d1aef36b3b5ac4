package bench

import (
	"strings"
	"testing"
	"time"
)

func TestMergeReport(t *testing.T) {
	doc := func(date string, sections map[int]string) string {
		var b strings.Builder
		b.WriteString("# Benchmarks\n\nGenerated on " + date + ".\n\n## Machine\n\n| cores | 2 |\n\n## Summary\n\n| # | measurement | measured | target | met |\n|---|---|---|---|---|\n")
		for _, n := range []int{1, 2, 3, 7} {
			if v, ok := sections[n]; ok {
				b.WriteString("| " + string(rune('0'+n)) + " | m | " + v + " | | |\n")
			}
		}
		for _, n := range []int{1, 2, 3, 7} {
			if v, ok := sections[n]; ok {
				b.WriteString("\n## " + string(rune('0'+n)) + ". Title\n\n" + v + " body\n")
			}
		}
		b.WriteString("\n## How to rerun\n\nrerun " + date + "\n")
		return b.String()
	}
	old := doc("old-date", map[int]string{1: "old1", 2: "old2", 3: "old3"})
	fresh := doc("new-date", map[int]string{2: "new2", 7: "new7"})
	got, err := mergeReport(old, fresh, []int{2, 7}, "new-date", 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := doc("old-date", map[int]string{1: "old1", 2: "new2", 3: "old3", 7: "new7"})
	want = strings.Replace(want, "\n## Machine", "\n**Section 2, 7 rerun alone** (`-only 2,7`) on new-date, taking 1m30s, on the same machine; the other sections are from the run above.\n\n## Machine", 1)
	want = strings.Replace(want, "rerun old-date", "rerun new-date", 1)
	if got != want {
		t.Errorf("merged report:\n%s\nwant:\n%s", got, want)
	}
	// Merging again replaces the note instead of stacking it.
	again, err := mergeReport(got, fresh, []int{2, 7}, "new-date", 90*time.Second)
	if err != nil || again != want {
		t.Errorf("merging twice: %v\n%s", err, again)
	}
	if _, err := mergeReport("# something else\n", fresh, []int{2}, "d", time.Second); err == nil {
		t.Error("merging into a file that is not a report succeeded")
	}
}

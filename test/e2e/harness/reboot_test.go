package harness

import (
	"testing"
	"time"
)

// containerd's own lines: 2.2.9 (from a run of the reboot test) and 1.7, which prints the
// sandbox metadata with %v.
func TestSandboxLog(t *testing.T) {
	log := `time="2026-12-06T10:01:24.853582147Z" level=info msg="RunPodSandbox for name:\"app-6868b466cb-2l4pq\" uid:\"0a0e8074\" namespace:\"default\" attempt:2"
time="2026-12-06T10:01:24.972059205Z" level=info msg="RunPodSandbox for name:\"app-6868b466cb-hx5bb\" uid:\"239406ec\" namespace:\"default\" attempt:2"
time="2026-12-06T10:01:31.333338311Z" level=error msg="RunPodSandbox for name:\"app-6868b466cb-2l4pq\" uid:\"0a0e8074\" namespace:\"default\" attempt:2 failed, error" error="NRI RunPodSandbox failed"
time="2026-12-06T10:01:33.771861391Z" level=info msg="RunPodSandbox for name:\"app-6868b466cb-2l4pq\" uid:\"0a0e8074\" namespace:\"default\" attempt:2"
time="2026-12-06T10:01:35.478190331Z" level=info msg="RunPodSandbox for name:\"app-6868b466cb-2l4pq\" uid:\"0a0e8074\" namespace:\"default\" attempt:2 returns sandbox id \"e5ca6e0e\""
time="2026-12-06T10:01:36.000000000Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:app-7d9f-abcde,Uid:1234,Namespace:default,Attempt:1,}"
time="2026-12-06T10:01:37.500000000Z" level=error msg="RunPodSandbox for &PodSandboxMetadata{Name:app-7d9f-abcde,Uid:1234,Namespace:default,Attempt:1,} failed, error" error="x"
time="2026-12-06T10:01:38.000000000Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:app-7d9f-abcde,Uid:1234,Namespace:default,Attempt:1,} returns sandbox id \"ab\""
time="2026-12-06T10:01:38.100000000Z" level=info msg="StopPodSandbox for \"ab\""
`
	got := sandboxLog(log)
	want := map[string][]string{
		"app-6868b466cb-2l4pq": {"start", "failed", "start", "started"},
		"app-6868b466cb-hx5bb": {"start"},
		"app-7d9f-abcde":       {"start", "failed", "started"},
	}
	if len(got) != len(want) {
		t.Fatalf("pods %v, want %v", got, want)
	}
	for pod, kinds := range want {
		events := got[pod]
		if len(events) != len(kinds) {
			t.Fatalf("%s: %v, want %v", pod, events, kinds)
		}
		for i, k := range kinds {
			if events[i].kind != k {
				t.Errorf("%s event %d: %s, want %s", pod, i, events[i].kind, k)
			}
		}
	}
	if d := got["app-6868b466cb-2l4pq"][2].at.Sub(got["app-6868b466cb-2l4pq"][1].at); d != 2438523080*time.Nanosecond {
		t.Errorf("wait between refusal and retry: %v", d)
	}
}

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/ecr"
	"github.com/sandbox-guard/sandbox-guard/internal/ecr/ecrtest"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
)

// Measurement 6: 1000 concurrent asks for the credentials of one ECR host, through the same
// code the image keeper uses (keeper.ECRCredentials over the real ecr.Provider and AWS SDK
// client), against ecrtest's fake ECR API in process.

const ecrHost = "123456789012.dkr.ecr.us-west-2.amazonaws.com"

func measureTokens(t testing.TB, s *section) error {
	const callers = 1000
	s.methodf("The real `ecr.Provider` (AWS SDK v2 ECR client, signing with a dummy shared credentials file, as the plugin is " +
		"configured in the end-to-end tests) behind `keeper.ECRCredentials` (the function the image keeper hands to containerd's " +
		"resolver), pointed at `ecrtest`'s fake ECR API on a loopback HTTP server in the benchmark process. 1000 goroutines wait " +
		"on one barrier and then each ask for the credentials of `" + ecrHost + "`; the fake counts `GetAuthorizationToken` " +
		"calls. A second wave of 1000 asks again with the token cached. Times are from the barrier's release.")
	srv := ecrtest.NewServer(ecrtest.Config{Password: "bench-password"})
	defer srv.Close()
	dir := t.TempDir()
	cfgFile, credFile := filepath.Join(dir, "config"), filepath.Join(dir, "credentials")
	if err := os.WriteFile(cfgFile, nil, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(credFile, []byte("[default]\naws_access_key_id = AKIDSANDBOXGUARDBENCH\naws_secret_access_key = not-a-secret\n"), 0o600); err != nil {
		return err
	}
	p := ecr.NewProvider(ecr.Options{Client: ecr.ClientConfig{BaseEndpoint: srv.URL,
		SharedConfigFiles: []string{cfgFile}, SharedCredentialsFiles: []string{credFile}}})
	creds := keeper.ECRCredentials(p)

	wave := func() (wall time.Duration, each durations, err error) {
		var wg sync.WaitGroup
		gate := make(chan struct{})
		each = make(durations, callers)
		errs := make([]error, callers)
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				start := time.Now()
				user, pass, err := creds(context.Background(), ecrHost)
				each[i] = time.Since(start)
				if err == nil && (user != "AWS" || pass != "bench-password") {
					err = fmt.Errorf("wrong credentials for caller %d", i)
				}
				errs[i] = err
			}()
		}
		time.Sleep(50 * time.Millisecond) // let the goroutines reach the barrier
		start := time.Now()
		close(gate)
		wg.Wait()
		wall = time.Since(start)
		for _, e := range errs {
			if e != nil {
				return wall, each, e
			}
		}
		return wall, each, nil
	}
	cold, coldEach, err := wave()
	if err != nil {
		return err
	}
	coldCalls := srv.Calls()
	warm, warmEach, err := wave()
	if err != nil {
		return err
	}
	st := p.Stats()
	say("  cold: %d callers, %d API calls, %s wall, p50 %s p99 %s; warm: %d calls in all, %s wall", callers, coldCalls,
		fmtDur(cold), fmtDur(coldEach.median()), fmtDur(coldEach.q(0.99)), srv.Calls(), fmtDur(warm))

	s.printf("| wave | callers | GetAuthorizationToken calls | wall time | per caller p50 | p99 | max |\n|---|---|---|---|---|---|---|\n")
	s.printf("| cold (no token yet) | %d | %d | %s | %s | %s | %s |\n", callers, coldCalls, fmtDur(cold), fmtDur(coldEach.median()), fmtDur(coldEach.q(0.99)), fmtDur(coldEach.max()))
	s.printf("| warm (token cached) | %d | %d more | %s | %s | %s | %s |\n\n", callers, srv.Calls()-coldCalls, fmtDur(warm), fmtDur(warmEach.median()), fmtDur(warmEach.q(0.99)), fmtDur(warmEach.max()))
	s.printf("Provider counters after both waves: %d fetches, %d errors, %d cache hits (callers that joined the cold wave's flight count as neither).\n\n", st.Fetches, st.Errors, st.Hits)
	s.row("GetAuthorizationToken calls for 1000 concurrent callers, one host", fmt.Sprintf("%d call, %s for all 1000", coldCalls, fmtDur(cold)),
		"1 call", yesNo(coldCalls == 1))
	s.notef("The cold wave's time is one SDK client set-up (shared config loading), one signed HTTP round trip to the loopback " +
		"fake and the wake-up of 1000 goroutines; a real ECR endpoint adds its network latency once, not per caller.")
	return nil
}

package harness

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/ecr/ecrtest"
)

// FakeECR is a loopback server speaking the ECR API inside the node's namespace: AWS itself is
// the one thing the tests imitate. GetAuthorizationToken answers with the test registry's
// credentials, like ECR answers with a token for the registry.
type FakeECR struct {
	*ecrtest.Fake
	URL             string
	CredentialsFile string // a dummy AWS credentials file for the SDK to sign with
}

// StartFakeECR serves the ECR API in n's namespace for the test's duration.
func (n *Node) StartFakeECR(lifetime time.Duration) *FakeECR {
	t := n.t
	f := ecrtest.New(ecrtest.Config{Username: n.Registry.User, Password: n.Registry.Password, Lifetime: lifetime})
	l := n.NS.Listen(t)
	srv := &http.Server{Handler: f}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { f.Release(); _ = srv.Close() })
	creds := filepath.Join(n.Dir, "aws-credentials")
	must(t, os.WriteFile(creds, []byte("[default]\naws_access_key_id = AKIDSANDBOXGUARDTEST\naws_secret_access_key = not-a-secret\n"), 0o600))
	return &FakeECR{Fake: f, URL: "http://" + l.Addr().String(), CredentialsFile: creds}
}

// PluginECRConfig is the ecr section that makes the plugin treat the test registry as ECR of
// us-west-2 and ask this server for tokens.
func (e *FakeECR) PluginECRConfig(n *Node) string {
	return fmt.Sprintf("ecr:\n  registries: {%q: us-west-2}\n  endpoint: %s\n  sharedCredentialsFiles: [%s]\n", n.Registry.Host, e.URL, e.CredentialsFile)
}

package ecr

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
)

// clearAWSEnv empties every variable the chain reads, and HOME, so that the tests see only what
// they set (t.Setenv restores them).
func clearAWSEnv(t *testing.T) {
	t.Helper()
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_SERVICE_ENDPOINT"} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true") // never a real IMDS
	t.Setenv("HOME", t.TempDir())
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseINI(t *testing.T) {
	cfg := writeTemp(t, "config", `# a comment
; another
[default]
region = us-east-1 ; trailing comment
role_arn=arn:aws:iam::1:role/x#not-a-comment
[profile node]
credential_process = "/usr/bin/helper --flag"
s3 =
  max_concurrent_requests = 10
[sso-session corp]
sso_region = us-east-1
[node2]
aws_access_key_id = IGNORED
Key_With_Case: colon value
`)
	creds := writeTemp(t, "credentials", "[node]\r\naws_access_key_id = AKIDNODE\r\naws_secret_access_key = 'secret'\r\n[default]\nregion = eu-west-1\n")
	got := loadProfiles([]string{cfg, filepath.Join(t.TempDir(), "missing")}, []string{creds})
	want := map[string]profile{
		"default": {"region": "eu-west-1", "role_arn": "arn:aws:iam::1:role/x#not-a-comment"},
		"node":    {"credential_process": "/usr/bin/helper --flag", "s3": "", "aws_access_key_id": "AKIDNODE", "aws_secret_access_key": "secret"},
	}
	if len(got) != len(want) {
		t.Fatalf("profiles %v, want %v", got, want)
	}
	for name, p := range want {
		for k, v := range p {
			if got[name][k] != v {
				t.Errorf("profile %s key %s = %q, want %q (all: %v)", name, k, got[name][k], v, got[name])
			}
		}
		if len(got[name]) != len(p) {
			t.Errorf("profile %s = %v, want %v", name, got[name], p)
		}
	}
}

// TestChainPicksProvider: which provider the chain picks, in the SDK's order.
func TestChainPicksProvider(t *testing.T) {
	tokenFile := writeTemp(t, "token", "jwt")
	for _, tt := range []struct {
		name    string
		env     map[string]string
		config  string // the config file
		creds   string // the credentials file
		profile string // ClientConfig.Profile
		want    aws.CredentialsProvider
		wantKey string // for static providers
		wantErr string
	}{
		{name: "nothing: the instance profile", want: (*ec2rolecreds.Provider)(nil)},
		{name: "environment keys", env: map[string]string{"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s"},
			creds: "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = s\n", wantKey: "AKIDENV"},
		{name: "a named profile wins over the environment", env: map[string]string{"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s"},
			creds: "[node]\naws_access_key_id = AKIDNODE\naws_secret_access_key = s\n", profile: "node", wantKey: "AKIDNODE"},
		{name: "default profile keys", creds: "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = s\n", wantKey: "AKIDFILE"},
		{name: "AWS_PROFILE", env: map[string]string{"AWS_PROFILE": "other"},
			creds: "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = s\n[other]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = s\n", wantKey: "AKIDOTHER"},
		{name: "web identity from the environment (IRSA)", env: map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile, "AWS_ROLE_ARN": "arn:aws:iam::1:role/r"},
			want: (*stscreds.WebIdentityRoleProvider)(nil)},
		{name: "web identity without a role", env: map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile}, wantErr: "no role ARN"},
		{name: "web identity in a profile", config: "[default]\nweb_identity_token_file = " + tokenFile + "\nrole_arn = arn:aws:iam::1:role/r\n",
			want: (*stscreds.WebIdentityRoleProvider)(nil)},
		{name: "credential_process (IAM Roles Anywhere)", config: "[profile node]\ncredential_process = /bin/true\n", profile: "node",
			want: (*processcreds.Provider)(nil)},
		{name: "role with a source profile", config: "[profile node]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n",
			creds: "[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = s\n", profile: "node", want: (*stscreds.AssumeRoleProvider)(nil)},
		{name: "role with credential_source", config: "[default]\nrole_arn = arn:aws:iam::1:role/r\ncredential_source = Ec2InstanceMetadata\n",
			want: (*stscreds.AssumeRoleProvider)(nil)},
		{name: "bad credential_source", config: "[default]\nrole_arn = arn:aws:iam::1:role/r\ncredential_source = Somewhere\n", wantErr: "credential_source"},
		{name: "missing source profile", config: "[default]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = nope\n", wantErr: `source_profile "nope" not found`},
		{name: "source profile loop", config: "[profile a]\nrole_arn = r\nsource_profile = b\n[profile b]\nrole_arn = r\nsource_profile = a\n", profile: "a", wantErr: "loop"},
		{name: "SSO is refused, saying why", config: "[default]\nsso_session = corp\nsso_account_id = 1\nsso_role_name = r\n", wantErr: "SSO"},
		{name: "a named profile that does not exist", profile: "nope", wantErr: `AWS profile "nope" not found`},
		{name: "container credentials (EKS Pod Identity)", env: map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials"},
			want: (*endpointcreds.Provider)(nil)},
		{name: "container credentials over http elsewhere", env: map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://192.0.2.1/creds"}, wantErr: "plain http only"},
		{name: "container credentials relative (ECS)", env: map[string]string{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x"},
			want: (*endpointcreds.Provider)(nil)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clearAWSEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c := ClientConfig{Profile: tt.profile, SharedConfigFiles: []string{writeTemp(t, "config", tt.config)},
				SharedCredentialsFiles: []string{writeTemp(t, "credentials", tt.creds)}}
			p, err := credentialsProvider(c, "us-west-2", http.DefaultClient)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantKey != "" {
				s, ok := p.(credentials.StaticCredentialsProvider)
				if !ok || s.Value.AccessKeyID != tt.wantKey {
					t.Fatalf("provider %T %+v, want static keys %s", p, p, tt.wantKey)
				}
				return
			}
			if !aws.IsCredentialsProvider(p, tt.want) {
				t.Fatalf("provider %T, want %T", p, tt.want)
			}
		})
	}
}

// TestChainRetrieves: the providers the chain builds get credentials from the process, the
// container endpoint and IMDS as configured (local stand-ins for the endpoints).
func TestChainRetrieves(t *testing.T) {
	credsJSON := func(id string) string {
		b, _ := json.Marshal(map[string]string{"AccessKeyId": id, "SecretAccessKey": "s", "Token": "t",
			"Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "Code": "Success"})
		return string(b)
	}
	var gotAuth string
	container := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		_, _ = w.Write([]byte(credsJSON("AKIDCONTAINER")))
	}))
	defer container.Close()
	imdsSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			_, _ = w.Write([]byte("imds-token"))
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/":
			_, _ = w.Write([]byte("node-role"))
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/node-role":
			_, _ = w.Write([]byte(credsJSON("AKIDINSTANCE")))
		default:
			http.NotFound(w, r)
		}
	}))
	defer imdsSrv.Close()
	tokenFile := writeTemp(t, "pod-identity-token", "pod-token")

	for _, tt := range []struct {
		name, config, want string
		env                map[string]string
	}{
		{name: "credential_process", want: "AKIDPROCESS",
			config: `[default]` + "\n" + `credential_process = echo '{"Version": 1, "AccessKeyId": "AKIDPROCESS", "SecretAccessKey": "s"}'` + "\n"},
		{name: "container endpoint with a token file", want: "AKIDCONTAINER",
			env: map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": container.URL + "/v1/credentials", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile}},
		{name: "instance profile", want: "AKIDINSTANCE",
			env: map[string]string{"AWS_EC2_METADATA_DISABLED": "", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imdsSrv.URL}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clearAWSEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			p, err := credentialsProvider(ClientConfig{SharedConfigFiles: []string{writeTemp(t, "config", tt.config)}}, "us-west-2", &http.Client{Transport: tr})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := p.Retrieve(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got.AccessKeyID != tt.want {
				t.Errorf("access key %s, want %s", got.AccessKeyID, tt.want)
			}
		})
	}
	if gotAuth != "pod-token" {
		t.Errorf("container endpoint saw Authorization %q, want the token file's content", gotAuth)
	}
}

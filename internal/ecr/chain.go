package ecr

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// The credential chain is the SDK's default chain (config.LoadDefaultConfig,
// resolve_credentials.go) for what a node can use, built from the SDK's own providers:
// environment keys, web identity (IRSA), a shared profile (static keys, credential_process,
// role_arn with source_profile or credential_source, web_identity_token_file), container
// credentials (EKS Pod Identity, ECS) and the instance profile (IMDS). Linking the config
// package instead would add its SSO, SSO-OIDC and console-login clients, which need an
// interactive login no node has (1.3 MiB of binary, 380 KB of heap at start); a profile that
// asks for them is an error that says so.

// Endpoints the SDK allows for container credentials over plain http.
var (
	ecsContainerIPv4 = net.IPv4(169, 254, 170, 2)
	eksContainerIPv4 = net.IPv4(169, 254, 170, 23)
	eksContainerIPv6 = net.ParseIP("fd00:ec2::23")
)

const ecsContainerEndpoint = "http://169.254.170.2"

// chain resolves the credentials provider for region from c and the environment.
type chain struct {
	region   string
	http     aws.HTTPClient
	profiles map[string]profile
	lookup   func(host string) ([]string, error)
}

// credentialsProvider returns the provider the SDK's default chain would pick for c.
func credentialsProvider(c ClientConfig, region string, httpClient aws.HTTPClient) (aws.CredentialsProvider, error) {
	configFiles, credFiles := sharedFiles(c)
	ch := &chain{region: region, http: httpClient, profiles: loadProfiles(configFiles, credFiles), lookup: net.LookupHost}
	name := c.Profile
	p, ok := ch.profiles[name]
	if name != "" && !ok { // a profile asked for by name must exist, as with the SDK
		return nil, fmt.Errorf("AWS profile %q not found in %v or %v", name, configFiles, credFiles)
	}
	switch {
	case c.Credentials != nil:
		return c.Credentials, nil
	case name != "":
		return ch.fromProfile(name, p, 0)
	case envKeys().HasKeys():
		return credentials.StaticCredentialsProvider{Value: envKeys(), Source: []aws.CredentialSource{aws.CredentialSourceEnvVars}}, nil
	case os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != "":
		return ch.webIdentity(os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE"), os.Getenv("AWS_ROLE_ARN"), os.Getenv("AWS_ROLE_SESSION_NAME"))
	}
	name = "default"
	for _, env := range []string{"AWS_DEFAULT_PROFILE", "AWS_PROFILE"} {
		if v := os.Getenv(env); v != "" {
			name = v
		}
	}
	return ch.fromProfile(name, ch.profiles[name], 0)
}

// envKeys are the static keys of the environment.
func envKeys() aws.Credentials {
	id := os.Getenv("AWS_ACCESS_KEY_ID")
	if id == "" {
		id = os.Getenv("AWS_ACCESS_KEY")
	}
	secret := os.Getenv("AWS_SECRET_ACCESS_KEY")
	if secret == "" {
		secret = os.Getenv("AWS_SECRET_KEY")
	}
	return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: os.Getenv("AWS_SESSION_TOKEN"), Source: "EnvConfigCredentials"}
}

// fromProfile is the SDK's resolveCredsFromProfile: the profile's own source of credentials
// (or, with none, the container's or the instance's), then its role_arn assumed with them.
// p may be nil (no such profile, and none was asked for by name).
func (ch *chain) fromProfile(name string, p profile, depth int) (aws.CredentialsProvider, error) {
	if depth > 8 {
		return nil, fmt.Errorf("AWS profile %q: source_profile chain too long (a loop?)", name)
	}
	var base aws.CredentialsProvider
	var err error
	keys := aws.Credentials{AccessKeyID: p["aws_access_key_id"], SecretAccessKey: p["aws_secret_access_key"],
		SessionToken: p["aws_session_token"], Source: "SharedConfigCredentials"}
	switch {
	case p["source_profile"] != "" && p["role_arn"] != "":
		src := p["source_profile"]
		sp, ok := ch.profiles[src]
		if !ok {
			return nil, fmt.Errorf("AWS profile %q: source_profile %q not found", name, src)
		}
		if src == name { // a profile may name itself for its own static keys
			sp = profile{"aws_access_key_id": sp["aws_access_key_id"], "aws_secret_access_key": sp["aws_secret_access_key"], "aws_session_token": sp["aws_session_token"]}
		}
		base, err = ch.fromProfile(src, sp, depth+1)
	case keys.HasKeys():
		base = credentials.StaticCredentialsProvider{Value: keys, Source: []aws.CredentialSource{aws.CredentialSourceProfile}}
	case p["credential_source"] != "":
		base, err = ch.fromSource(name, p["credential_source"])
	case p["web_identity_token_file"] != "":
		// The role is the web identity's; no second assume-role on top.
		return ch.webIdentity(p["web_identity_token_file"], p["role_arn"], p["role_session_name"])
	case p["sso_session"] != "" || p["sso_start_url"] != "" || p["sso_account_id"] != "" || p["login_session"] != "":
		return nil, fmt.Errorf("AWS profile %q uses AWS IAM Identity Center (SSO) or a console login, which needs an interactive "+
			"login: not supported by sandbox-guard; use static keys, credential_process, a role or the instance profile", name)
	case p["credential_process"] != "":
		base = processcreds.NewProvider(p["credential_process"])
	default:
		base, err = ch.containerOrInstance()
	}
	if err != nil {
		return nil, err
	}
	if p["role_arn"] == "" {
		return base, nil
	}
	if p["mfa_serial"] != "" {
		return nil, fmt.Errorf("AWS profile %q: mfa_serial needs a token typed in: not supported by sandbox-guard", name)
	}
	return ch.assumeRole(name, p, base)
}

// fromSource is the SDK's resolveCredsFromSource (credential_source = ...).
func (ch *chain) fromSource(name, source string) (aws.CredentialsProvider, error) {
	switch source {
	case "Ec2InstanceMetadata":
		return ch.instance(), nil
	case "Environment":
		return credentials.StaticCredentialsProvider{Value: envKeys(), Source: []aws.CredentialSource{aws.CredentialSourceEnvVars}}, nil
	case "EcsContainer":
		p, ok, err := ch.container()
		if err == nil && !ok {
			err = errors.New("credential_source EcsContainer, but neither AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor AWS_CONTAINER_CREDENTIALS_FULL_URI is set")
		}
		return p, err
	}
	return nil, fmt.Errorf("AWS profile %q: credential_source %q: must be EcsContainer, Ec2InstanceMetadata or Environment", name, source)
}

// containerOrInstance is the end of the chain: container credentials when the environment
// names an endpoint, else the instance profile.
func (ch *chain) containerOrInstance() (aws.CredentialsProvider, error) {
	p, ok, err := ch.container()
	if ok || err != nil {
		return p, err
	}
	return ch.instance(), nil
}

// instance is the instance profile through IMDS (AWS_EC2_METADATA_DISABLED and
// AWS_EC2_METADATA_SERVICE_ENDPOINT honoured by the imds client).
func (ch *chain) instance() aws.CredentialsProvider {
	return ec2rolecreds.New(func(o *ec2rolecreds.Options) {
		o.Client = imds.New(imds.Options{HTTPClient: ch.http})
	})
}

// container is EKS Pod Identity's or ECS's credentials endpoint, when the environment names
// one; plain http only to the hosts the SDK allows.
func (ch *chain) container() (aws.CredentialsProvider, bool, error) {
	endpoint := ""
	if rel := os.Getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"); rel != "" {
		endpoint = ecsContainerEndpoint + rel
	} else if full := os.Getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI"); full != "" {
		if err := ch.allowedContainerEndpoint(full); err != nil {
			return nil, true, err
		}
		endpoint = full
	} else {
		return nil, false, nil
	}
	p := endpointcreds.New(endpoint, func(o *endpointcreds.Options) {
		o.HTTPClient = ch.http
		o.AuthorizationToken = os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN")
		if file := os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"); file != "" {
			o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
				b, err := os.ReadFile(file)
				if err != nil {
					return "", fmt.Errorf("reading the container authorization token: %w", err)
				}
				return string(b), nil
			})
		}
	})
	return aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = 5 * time.Minute }), true, nil
}

func (ch *chain) allowedContainerEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("AWS_CONTAINER_CREDENTIALS_FULL_URI: %w", err)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("AWS_CONTAINER_CREDENTIALS_FULL_URI %q: no host", endpoint)
	}
	if u.Scheme != "http" {
		return nil
	}
	allowed := func(ip net.IP) bool {
		return ip.IsLoopback() || ip.Equal(ecsContainerIPv4) || ip.Equal(eksContainerIPv4) || ip.Equal(eksContainerIPv6)
	}
	if ip := net.ParseIP(host); ip != nil {
		if allowed(ip) {
			return nil
		}
	} else if addrs, err := ch.lookup(host); err == nil && len(addrs) > 0 {
		ok := true
		for _, a := range addrs {
			if ip := net.ParseIP(a); ip == nil || !allowed(ip) {
				ok = false
			}
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("AWS_CONTAINER_CREDENTIALS_FULL_URI %q: plain http only to loopback or the ECS/EKS container hosts", endpoint)
}

// sts is an STS client in the chain's region, signing with creds (nil: unsigned, for web
// identity).
func (ch *chain) sts(creds aws.CredentialsProvider) *sts.Client {
	return sts.New(sts.Options{Region: ch.region, Credentials: creds, HTTPClient: ch.http})
}

func (ch *chain) webIdentity(tokenFile, roleARN, session string) (aws.CredentialsProvider, error) {
	if roleARN == "" {
		return nil, fmt.Errorf("web identity token file %s but no role ARN (AWS_ROLE_ARN or role_arn)", tokenFile)
	}
	p := stscreds.NewWebIdentityRoleProvider(ch.sts(nil), roleARN, stscreds.IdentityTokenFile(tokenFile), func(o *stscreds.WebIdentityRoleOptions) {
		o.RoleSessionName = session
	})
	return aws.NewCredentialsCache(p), nil
}

func (ch *chain) assumeRole(name string, p profile, base aws.CredentialsProvider) (aws.CredentialsProvider, error) {
	opts := func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = p["role_session_name"]
		if s := p["duration_seconds"]; s != "" {
			if n, err := strconv.Atoi(s); err == nil && time.Duration(n)*time.Second/time.Minute > 15 {
				o.Duration = time.Duration(n) * time.Second
			}
		}
		if id := p["external_id"]; id != "" {
			o.ExternalID = aws.String(id)
		}
	}
	if s := p["duration_seconds"]; s != "" {
		if _, err := strconv.Atoi(s); err != nil {
			return nil, fmt.Errorf("AWS profile %q: duration_seconds %q: %w", name, s, err)
		}
	}
	return aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(ch.sts(aws.NewCredentialsCache(base)), p["role_arn"], opts)), nil
}

package ecr

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
)

// API is the one ECR call the Provider makes; *ecr.Client implements it, tests pass a fake.
type API interface {
	GetAuthorizationToken(ctx context.Context, in *ecr.GetAuthorizationTokenInput, optFns ...func(*ecr.Options)) (*ecr.GetAuthorizationTokenOutput, error)
}

var _ API = (*ecr.Client)(nil)

// ClientFactory returns an API client for region. The Provider calls it at most once per
// region at a time and keeps what it returns.
type ClientFactory func(ctx context.Context, region string) (API, error)

// ClientConfig sets up the real ECR clients. A plugin started by containerd has no environment
// (no AWS_* variables, no HOME), so anything besides the instance profile has to be named here.
type ClientConfig struct {
	// BaseEndpoint replaces the ECR API endpoint in every region (a test server).
	BaseEndpoint string
	// Endpoints replaces the ECR API endpoint per region and wins over BaseEndpoint: interface
	// VPC endpoints (https://vpce-....api.ecr.us-west-2.vpce.amazonaws.com) are regional.
	Endpoints map[string]string
	// SharedConfigFiles and SharedCredentialsFiles are AWS config and credentials files to read
	// instead of ~/.aws/config and ~/.aws/credentials (EKS Hybrid Nodes, on-premises hosts).
	SharedConfigFiles      []string
	SharedCredentialsFiles []string
	// Profile selects a profile in those files.
	Profile string
	// Credentials replaces the SDK's default credential chain (tests: a static provider).
	Credentials aws.CredentialsProvider
	// RetryMaxAttempts caps the SDK's own attempts per call; 0 keeps its default (3).
	RetryMaxAttempts int
	// FIPS and DualStack select the FIPS and dual-stack API endpoints of regions without an
	// endpoint override (the SDK refuses both together with a custom endpoint).
	FIPS      bool
	DualStack bool
}

// endpoint returns the endpoint override for region, or "".
func (c ClientConfig) endpoint(region string) string {
	if ep, ok := c.Endpoints[region]; ok && ep != "" {
		return ep
	}
	return c.BaseEndpoint
}

// NewClientFactory returns a factory that builds real ECR clients for each region,
// configured by c. Credentials come from c, or the chain the SDK's default would use on a node
// (environment, shared files, web identity, container credentials, the instance profile via
// IMDS; see chain.go).
func NewClientFactory(c ClientConfig) ClientFactory {
	c.Endpoints = maps.Clone(c.Endpoints)
	c.SharedConfigFiles = slices.Clone(c.SharedConfigFiles)
	c.SharedCredentialsFiles = slices.Clone(c.SharedCredentialsFiles)
	return func(_ context.Context, region string) (API, error) {
		httpClient := awshttp.NewBuildableClient()
		creds, err := credentialsProvider(c, region, httpClient)
		if err != nil {
			return nil, fmt.Errorf("loading AWS configuration for %s: %w", region, err)
		}
		o := ecr.Options{Region: region, Credentials: creds, HTTPClient: httpClient, RetryMaxAttempts: c.RetryMaxAttempts}
		// The SDK's endpoint rules refuse FIPS or dual-stack together with a custom endpoint;
		// an override is already the endpoint to use.
		if ep := c.endpoint(region); ep != "" {
			o.BaseEndpoint = aws.String(ep)
		} else {
			if c.FIPS {
				o.EndpointOptions.UseFIPSEndpoint = aws.FIPSEndpointStateEnabled
			}
			if c.DualStack {
				o.EndpointOptions.UseDualStackEndpoint = aws.DualStackEndpointStateEnabled
			}
		}
		return ecr.New(o), nil
	}
}

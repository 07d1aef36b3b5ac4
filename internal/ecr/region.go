package ecr

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// NodeRegionTimeout bounds NodeRegion: off EC2 nothing answers at the metadata address, and a
// node must not wait long to learn that.
const NodeRegionTimeout = 5 * time.Second

// RegionGetter is the one instance metadata call NodeRegion makes; *imds.Client implements it.
type RegionGetter interface {
	GetRegion(ctx context.Context, in *imds.GetRegionInput, optFns ...func(*imds.Options)) (*imds.GetRegionOutput, error)
}

var _ RegionGetter = (*imds.Client)(nil)

// NodeRegion asks the instance metadata service (IMDSv2) for the node's region, for choosing
// the EKS pause image when no region is configured. c nil means imds.New(imds.Options{}).
// Never use it to choose which token a registry needs: that region comes from the host.
func NodeRegion(ctx context.Context, c RegionGetter) (string, error) {
	if c == nil {
		c = imds.New(imds.Options{})
	}
	ctx, cancel := context.WithTimeout(ctx, NodeRegionTimeout)
	defer cancel()
	out, err := c.GetRegion(ctx, &imds.GetRegionInput{})
	if err != nil {
		return "", fmt.Errorf("asking instance metadata for the region (not on EC2? configure the region): %w", err)
	}
	if out == nil || out.Region == "" {
		return "", errors.New("instance metadata returned an empty region")
	}
	return out.Region, nil
}

package main

// The subset of k8s.io/cri-client (cri-tools v1.36.0) that crictl-lite needs: the same
// per-call timeouts, response checks and klog error lines, so errors read the same.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pb "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type runtimeClient struct {
	a       *app
	conn    *grpc.ClientConn
	rt      pb.RuntimeServiceClient
	timeout time.Duration
}

type imageClient struct {
	a       *app
	conn    *grpc.ClientConn
	img     pb.ImageServiceClient
	timeout time.Duration
}

// newRuntimeClient connects and validates the connection with a Version call.
func (a *app) newRuntimeClient(endpoint string, timeout time.Duration) (*runtimeClient, error) {
	conn, err := dialCRI(endpoint)
	if err != nil {
		return nil, err
	}

	c := &runtimeClient{a: a, conn: conn, rt: pb.NewRuntimeServiceClient(conn), timeout: timeout}

	ctx, cancel := context.WithTimeout(a.ctx, timeout)
	defer cancel()

	if _, err := c.rt.Version(ctx, &pb.VersionRequest{}); err != nil {
		conn.Close()

		return nil, fmt.Errorf("validate service connection: validate CRI v1 runtime API for endpoint %q: %w", endpoint, err)
	}

	return c, nil
}

// newImageClient connects and validates the connection with an ImageFsInfo call.
func (a *app) newImageClient(endpoint string, timeout time.Duration) (*imageClient, error) {
	conn, err := dialCRI(endpoint)
	if err != nil {
		return nil, err
	}

	c := &imageClient{a: a, conn: conn, img: pb.NewImageServiceClient(conn), timeout: timeout}

	ctx, cancel := context.WithTimeout(a.ctx, timeout)
	defer cancel()

	if _, err := c.img.ImageFsInfo(ctx, &pb.ImageFsInfoRequest{}); err != nil {
		conn.Close()

		return nil, fmt.Errorf("validate service connection: validate CRI v1 image API for endpoint %q: %w", endpoint, err)
	}

	return c, nil
}

// call runs one RPC with a timeout, logging a failure like cri-client does.
func call[T any](ctx context.Context, timeout time.Duration, rpc func(context.Context) (T, error), onErr func(error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	res, err := interruptible(ctx, rpc)
	if err != nil && onErr != nil {
		onErr(err)
	}

	return res, err
}

func (c *runtimeClient) logErr(site, msg string, kv ...string) func(error) {
	return func(err error) { c.a.klogError(site, msg, err, kv...) }
}

func (c *runtimeClient) Version(ctx context.Context, apiVersion string) (*pb.VersionResponse, error) {
	r, err := call(ctx, c.timeout, func(ctx context.Context) (*pb.VersionResponse, error) {
		return c.rt.Version(ctx, &pb.VersionRequest{Version: apiVersion})
	}, c.logErr("remote_runtime.go:192", "Version from runtime service failed"))
	if err != nil {
		return nil, err
	}

	var missing []string

	for _, f := range []struct{ name, value string }{
		{"Version", r.GetVersion()}, {"RuntimeName", r.GetRuntimeName()},
		{"RuntimeApiVersion", r.GetRuntimeApiVersion()}, {"RuntimeVersion", r.GetRuntimeVersion()},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}

	if len(missing) > 0 {
		return nil, fmt.Errorf("not all fields are set in VersionResponse (missing %s)", strings.Join(missing, ", "))
	}

	return r, nil
}

func (c *runtimeClient) Status(ctx context.Context, verbose bool) (*pb.StatusResponse, error) {
	r, err := call(ctx, c.timeout, func(ctx context.Context) (*pb.StatusResponse, error) {
		return c.rt.Status(ctx, &pb.StatusRequest{Verbose: verbose})
	}, c.logErr("remote_runtime.go:801", "Status from runtime service failed"))
	if err != nil {
		return nil, err
	}

	if r.GetStatus() == nil || len(r.GetStatus().GetConditions()) < 2 {
		err := errors.New("RuntimeReady or NetworkReady condition are not set")
		c.a.klogError("remote_runtime.go:810", "Status failed", err)

		return nil, err
	}

	return r, nil
}

// RunPodSandbox uses twice the connection timeout, as cri-client does.
func (c *runtimeClient) RunPodSandbox(ctx context.Context, cfg *pb.PodSandboxConfig, handler string) (string, error) {
	r, err := call(ctx, 2*c.timeout, func(ctx context.Context) (*pb.RunPodSandboxResponse, error) {
		return c.rt.RunPodSandbox(ctx, &pb.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	}, c.logErr("remote_runtime.go:237", "RunPodSandbox from runtime service failed"))
	if err != nil {
		return "", err
	}

	if r.GetPodSandboxId() == "" {
		err := fmt.Errorf("PodSandboxId is not set for sandbox %q", cfg.GetMetadata())
		c.a.klogError("remote_runtime.go:246", "RunPodSandbox failed", err)

		return "", err
	}

	return r.GetPodSandboxId(), nil
}

func (c *runtimeClient) StopPodSandbox(ctx context.Context, id string) error {
	_, err := call(ctx, c.timeout, func(ctx context.Context) (*pb.StopPodSandboxResponse, error) {
		return c.rt.StopPodSandbox(ctx, &pb.StopPodSandboxRequest{PodSandboxId: id})
	}, c.logErr("remote_runtime.go:267", "StopPodSandbox from runtime service failed", "podSandboxID", id))

	return err
}

func (c *runtimeClient) RemovePodSandbox(ctx context.Context, id string) error {
	_, err := call(ctx, c.timeout, func(ctx context.Context) (*pb.RemovePodSandboxResponse, error) {
		return c.rt.RemovePodSandbox(ctx, &pb.RemovePodSandboxRequest{PodSandboxId: id})
	}, c.logErr("remote_runtime.go:287", "RemovePodSandbox from runtime service failed", "podSandboxID", id))

	return err
}

func (c *runtimeClient) PodSandboxStatus(ctx context.Context, id string, verbose bool) (*pb.PodSandboxStatusResponse, error) {
	r, err := call(ctx, c.timeout, func(ctx context.Context) (*pb.PodSandboxStatusResponse, error) {
		return c.rt.PodSandboxStatus(ctx, &pb.PodSandboxStatusRequest{PodSandboxId: id, Verbose: verbose})
	}, nil)
	if err != nil {
		return nil, err
	}

	if s := r.GetStatus(); s != nil {
		md := s.GetMetadata()

		switch {
		case s.GetId() == "":
			return nil, errors.New("status.Id is not set")
		case md == nil:
			return nil, errors.New("status.Metadata is not set")
		case md.GetName() == "" || md.GetNamespace() == "" || md.GetUid() == "":
			return nil, fmt.Errorf("metadata.Name, metadata.Namespace or metadata.Uid is not in metadata %q", md)
		case s.GetCreatedAt() == 0:
			return nil, errors.New("status.CreatedAt is not set")
		}
	}

	return r, nil
}

func (c *runtimeClient) ListPodSandbox(ctx context.Context, filter *pb.PodSandboxFilter) ([]*pb.PodSandbox, error) {
	r, err := call(ctx, c.timeout, func(ctx context.Context) (*pb.ListPodSandboxResponse, error) {
		return c.rt.ListPodSandbox(ctx, &pb.ListPodSandboxRequest{Filter: filter})
	}, c.logErr("remote_runtime.go:347", "ListPodSandbox with filter from runtime service failed", "filter", filter.String()))

	return r.GetItems(), err
}

func (c *runtimeClient) CreateContainer(ctx context.Context, podID string, cfg *pb.ContainerConfig, podCfg *pb.PodSandboxConfig) (string, error) {
	r, err := call(ctx, c.timeout, func(ctx context.Context) (*pb.CreateContainerResponse, error) {
		return c.rt.CreateContainer(ctx, &pb.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	}, c.logErr("remote_runtime.go:410", "CreateContainer in sandbox from runtime service failed", "podSandboxID", podID))
	if err != nil {
		return "", err
	}

	if r.GetContainerId() == "" {
		err := fmt.Errorf("ContainerId is not set for container %q", cfg.GetMetadata())
		c.a.klogError("remote_runtime.go:418", "CreateContainer failed", err)

		return "", err
	}

	return r.GetContainerId(), nil
}

func (c *runtimeClient) StartContainer(ctx context.Context, id string) error {
	_, err := call(ctx, c.timeout, func(ctx context.Context) (*pb.StartContainerResponse, error) {
		return c.rt.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: id})
	}, c.logErr("remote_runtime.go:435", "StartContainer from runtime service failed", "containerID", id))

	return err
}

// StopContainer allows the grace period on top of the connection timeout.
func (c *runtimeClient) StopContainer(ctx context.Context, id string, grace int64) error {
	_, err := call(ctx, c.timeout+time.Duration(grace)*time.Second, func(ctx context.Context) (*pb.StopContainerResponse, error) {
		return c.rt.StopContainer(ctx, &pb.StopContainerRequest{ContainerId: id, Timeout: grace})
	}, c.logErr("remote_runtime.go:459", "StopContainer from runtime service failed", "containerID", id))

	return err
}

func (c *runtimeClient) RemoveContainer(ctx context.Context, id string) error {
	_, err := call(ctx, c.timeout, func(ctx context.Context) (*pb.RemoveContainerResponse, error) {
		return c.rt.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: id})
	}, c.logErr("remote_runtime.go:479", "RemoveContainer from runtime service failed", "containerID", id))

	return err
}

func (c *runtimeClient) ListContainers(ctx context.Context, filter *pb.ContainerFilter) ([]*pb.Container, error) {
	r, err := call(ctx, c.timeout, func(ctx context.Context) (*pb.ListContainersResponse, error) {
		return c.rt.ListContainers(ctx, &pb.ListContainersRequest{Filter: filter})
	}, c.logErr("remote_runtime.go:506", "ListContainers with filter from runtime service failed", "filter", filter.String()))

	return r.GetContainers(), err
}

func (c *runtimeClient) ContainerStatus(ctx context.Context, id string, verbose bool) (*pb.ContainerStatusResponse, error) {
	r, err := call(ctx, c.timeout, func(ctx context.Context) (*pb.ContainerStatusResponse, error) {
		return c.rt.ContainerStatus(ctx, &pb.ContainerStatusRequest{ContainerId: id, Verbose: verbose})
	}, c.logErr("remote_runtime.go:569", "ContainerStatus from runtime service failed", "containerID", id))
	if err != nil {
		return nil, err
	}

	if s := r.GetStatus(); s != nil {
		var err error

		switch md := s.GetMetadata(); {
		case s.GetId() == "":
			err = errors.New("status.Id is not set")
		case md == nil:
			err = errors.New("status.Metadata is not set")
		case md.GetName() == "":
			err = fmt.Errorf("metadata.Name is not in metadata %q", md)
		case s.GetCreatedAt() == 0:
			err = errors.New("status.CreatedAt is not set")
		case s.GetImage().GetImage() == "":
			err = errors.New("status.Image is not set")
		case s.GetImageRef() == "":
			err = errors.New("status.ImageRef is not set")
		}

		if err != nil {
			c.a.klogError("remote_runtime.go:579", "verify ContainerStatus failed", err, "containerID", id)

			return nil, err
		}
	}

	return r, nil
}

func (c *imageClient) ListImages(ctx context.Context, filter *pb.ImageFilter) ([]*pb.Image, error) {
	r, err := call(ctx, c.timeout, func(ctx context.Context) (*pb.ListImagesResponse, error) {
		return c.img.ListImages(ctx, &pb.ListImagesRequest{Filter: filter})
	}, func(err error) {
		c.a.klogError("remote_image.go:161", "ListImages with filter from image service failed", err, "filter", filter.String())
	})

	return r.GetImages(), err
}

func (c *imageClient) ImageStatus(ctx context.Context, image *pb.ImageSpec, verbose bool) (*pb.ImageStatusResponse, error) {
	r, err := call(ctx, c.timeout, func(ctx context.Context) (*pb.ImageStatusResponse, error) {
		return c.img.ImageStatus(ctx, &pb.ImageStatusRequest{Image: image, Verbose: verbose})
	}, func(err error) {
		c.a.klogError("remote_image.go:217", "Get ImageStatus from image service failed", err, "image", image.GetImage())
	})
	if err != nil {
		return nil, err
	}

	if img := r.GetImage(); img != nil && (img.GetId() == "" || img.GetSize() == 0) {
		err := fmt.Errorf("Id or size of image %q is not set", image.GetImage()) //nolint:stylecheck // cri-client's text
		c.a.klogError("remote_image.go:226", "ImageStatus failed", err, "image", image.GetImage())

		return nil, err
	}

	return r, nil
}

// PullImage has no timeout of its own; an Unknown status is reduced to its message.
func (c *imageClient) PullImage(ctx context.Context, image *pb.ImageSpec, auth *pb.AuthConfig, podCfg *pb.PodSandboxConfig) (string, error) {
	r, err := interruptible(ctx, func(ctx context.Context) (*pb.PullImageResponse, error) {
		return c.img.PullImage(ctx, &pb.PullImageRequest{Image: image, Auth: auth, SandboxConfig: podCfg})
	})
	if err != nil {
		c.a.klogError("remote_image.go:250", "PullImage from image service failed", err, "image", image.GetImage())

		if s, ok := status.FromError(err); ok && s.Code() == codes.Unknown {
			return "", errors.New(s.Message())
		}

		return "", err
	}

	if r.GetImageRef() == "" {
		c.a.klogError("remote_image.go:267", "ImageRef of image is not set", errors.New("PullImage failed"), "image", image.GetImage())

		return "", fmt.Errorf("imageRef of image %q is not set", image.GetImage())
	}

	return r.GetImageRef(), nil
}

func (c *imageClient) RemoveImage(ctx context.Context, image *pb.ImageSpec) error {
	_, err := call(ctx, c.timeout, func(ctx context.Context) (*pb.RemoveImageResponse, error) {
		return c.img.RemoveImage(ctx, &pb.RemoveImageRequest{Image: image})
	}, func(err error) {
		c.a.klogError("remote_image.go:284", "RemoveImage from image service failed", err, "image", image.GetImage())
	})

	return err
}

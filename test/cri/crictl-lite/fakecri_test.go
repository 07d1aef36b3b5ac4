package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pb "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeCRI is a small in-memory CRI runtime and image service used by the tests (and by the
// optional comparison against real crictl). It is deterministic: IDs are derived from the
// metadata, so two runs of the same command sequence produce the same output.
//
// Special names trigger failures:
//   - a pod named "nri-reject" fails RunPodSandbox with an NRI-style Unknown error;
//   - pulling an image whose name contains "denied" fails with an Unknown error;
//   - pulling an image whose name contains "missing" fails with NotFound.
type fakeCRI struct {
	pb.UnimplementedRuntimeServiceServer
	pb.UnimplementedImageServiceServer

	mu         sync.Mutex
	created    int64 // base creation time (ns)
	seq        int64
	pods       map[string]*pb.PodSandbox
	containers map[string]*pb.ContainerStatus
	images     map[string]*pb.Image
	lastPull   *pb.PullImageRequest
	lastRun    *pb.RunPodSandboxRequest
}

const nriRejectMsg = `NRI RunPodSandbox failed: plugin "10-guard" rejected pod: image "evil:latest" not allowed`

func newFakeCRI() *fakeCRI {
	f := &fakeCRI{
		created:    time.Now().Add(-3 * time.Hour).UnixNano(),
		pods:       map[string]*pb.PodSandbox{},
		containers: map[string]*pb.ContainerStatus{},
		images:     map[string]*pb.Image{},
	}
	f.addImage("registry.k8s.io/pause:3.10", 320368, true)
	f.addImage("docker.io/library/busybox:1.36", 2158512, false)

	return f
}

// startFakeCRI serves f on a unix socket in a temporary directory and returns the endpoint.
func startFakeCRI(t *testing.T, f *fakeCRI) string {
	t.Helper()

	sock := filepath.Join(t.TempDir(), "cri.sock")

	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}

	srv := grpc.NewServer()
	pb.RegisterRuntimeServiceServer(srv, f)
	pb.RegisterImageServiceServer(srv, f)

	go func() { _ = srv.Serve(l) }()

	t.Cleanup(srv.Stop)

	return "unix://" + sock
}

func fakeID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "/")))

	return hex.EncodeToString(sum[:])
}

func (f *fakeCRI) addImage(ref string, size uint64, pinned bool) *pb.Image {
	id := "sha256:" + fakeID("image", ref)
	name := ref[:strings.LastIndex(ref, ":")]
	img := &pb.Image{
		Id:          id,
		RepoTags:    []string{ref},
		RepoDigests: []string{name + "@sha256:" + fakeID("digest", ref)},
		Size:        size,
		Pinned:      pinned,
	}
	f.images[id] = img

	return img
}

func (f *fakeCRI) nextCreated() int64 {
	f.seq++

	return f.created + f.seq*int64(time.Second)
}

func (f *fakeCRI) findImage(ref string) *pb.Image {
	if img, ok := f.images[ref]; ok {
		return img
	}

	if !strings.Contains(ref, ":") && !strings.Contains(ref, "@") {
		ref += ":latest"
	}

	for _, img := range f.images {
		for _, tag := range img.GetRepoTags() {
			if tag == ref || strings.TrimPrefix(tag, "docker.io/library/") == ref {
				return img
			}
		}
	}

	return nil
}

// --- RuntimeService ---

func (f *fakeCRI) Version(context.Context, *pb.VersionRequest) (*pb.VersionResponse, error) {
	return &pb.VersionResponse{Version: "0.1.0", RuntimeName: "fakecri", RuntimeVersion: "v9.9.9", RuntimeApiVersion: "v1"}, nil
}

func (f *fakeCRI) Status(_ context.Context, req *pb.StatusRequest) (*pb.StatusResponse, error) {
	resp := &pb.StatusResponse{
		Status: &pb.RuntimeStatus{Conditions: []*pb.RuntimeCondition{
			{Type: "RuntimeReady", Status: true},
			{Type: "NetworkReady", Status: false, Reason: "NetworkPluginNotReady", Message: "cni <config> uninitialized & waiting"},
		}},
		RuntimeHandlers: []*pb.RuntimeHandler{
			{Name: "", Features: &pb.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true}},
			{Name: "runc", Features: &pb.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: true}},
		},
		Features: &pb.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	if req.GetVerbose() {
		resp.Info = map[string]string{
			"config":            `{"containerd":{"defaultRuntimeName":"runc"},"enableSelinux":false}`,
			"golang":            `"go1.26.8"`,
			"lastCNILoadStatus": "cni config load failed: no network config found",
		}
	}

	return resp, nil
}

func (f *fakeCRI) RunPodSandbox(_ context.Context, req *pb.RunPodSandboxRequest) (*pb.RunPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	f.lastRun = req

	md := req.GetConfig().GetMetadata()
	if md.GetName() == "nri-reject" {
		return nil, status.Error(codes.Unknown, nriRejectMsg)
	}

	id := fakeID("pod", md.GetNamespace(), md.GetName(), md.GetUid(), fmt.Sprint(md.GetAttempt()))
	f.pods[id] = &pb.PodSandbox{
		Id:             id,
		Metadata:       md,
		State:          pb.PodSandboxState_SANDBOX_READY,
		CreatedAt:      f.nextCreated(),
		Labels:         req.GetConfig().GetLabels(),
		Annotations:    req.GetConfig().GetAnnotations(),
		RuntimeHandler: req.GetRuntimeHandler(),
	}

	return &pb.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func (f *fakeCRI) pod(id string) (*pb.PodSandbox, error) {
	if p, ok := f.pods[id]; ok {
		return p, nil
	}

	var found *pb.PodSandbox

	for full, p := range f.pods {
		if id != "" && strings.HasPrefix(full, id) {
			if found != nil {
				return nil, status.Errorf(codes.Unknown, "ambiguous ID %q", id)
			}

			found = p
		}
	}

	if found == nil {
		return nil, status.Errorf(codes.NotFound, "an error occurred when try to find sandbox %q: not found", id)
	}

	return found, nil
}

func (f *fakeCRI) StopPodSandbox(_ context.Context, req *pb.StopPodSandboxRequest) (*pb.StopPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	p, err := f.pod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}

	p.State = pb.PodSandboxState_SANDBOX_NOTREADY

	for _, c := range f.containers {
		if c.GetLabels()["sandbox"] == p.GetId() && c.GetState() == pb.ContainerState_CONTAINER_RUNNING {
			c.State = pb.ContainerState_CONTAINER_EXITED
		}
	}

	return &pb.StopPodSandboxResponse{}, nil
}

func (f *fakeCRI) RemovePodSandbox(_ context.Context, req *pb.RemovePodSandboxRequest) (*pb.RemovePodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	p, err := f.pod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}

	delete(f.pods, p.GetId())

	return &pb.RemovePodSandboxResponse{}, nil
}

func (f *fakeCRI) PodSandboxStatus(_ context.Context, req *pb.PodSandboxStatusRequest) (*pb.PodSandboxStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	p, err := f.pod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}

	return &pb.PodSandboxStatusResponse{Status: &pb.PodSandboxStatus{
		Id:             p.GetId(),
		Metadata:       p.GetMetadata(),
		State:          p.GetState(),
		CreatedAt:      p.GetCreatedAt(),
		Labels:         p.GetLabels(),
		Annotations:    p.GetAnnotations(),
		RuntimeHandler: p.GetRuntimeHandler(),
	}}, nil
}

func (f *fakeCRI) ListPodSandbox(_ context.Context, req *pb.ListPodSandboxRequest) (*pb.ListPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	filter := req.GetFilter()
	items := []*pb.PodSandbox{}

	for id, p := range f.pods {
		if filter.GetId() != "" && !strings.HasPrefix(id, filter.GetId()) {
			continue
		}

		if filter.GetState() != nil && filter.GetState().GetState() != p.GetState() {
			continue
		}

		if !labelsMatch(filter.GetLabelSelector(), p.GetLabels()) {
			continue
		}

		items = append(items, p)
	}

	sort.Slice(items, func(i, j int) bool { return items[i].GetId() < items[j].GetId() })

	return &pb.ListPodSandboxResponse{Items: items}, nil
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}

	return true
}

func (f *fakeCRI) CreateContainer(_ context.Context, req *pb.CreateContainerRequest) (*pb.CreateContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	p, err := f.pod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}

	cfg := req.GetConfig()

	img := f.findImage(cfg.GetImage().GetImage())
	if img == nil {
		return nil, status.Errorf(codes.NotFound, "failed to get image %q: not found", cfg.GetImage().GetImage())
	}

	id := fakeID("ctr", p.GetId(), cfg.GetMetadata().GetName(), fmt.Sprint(cfg.GetMetadata().GetAttempt()))
	labels := map[string]string{
		"io.kubernetes.pod.name":      p.GetMetadata().GetName(),
		"io.kubernetes.pod.namespace": p.GetMetadata().GetNamespace(),
		"sandbox":                     p.GetId(),
	}

	for k, v := range cfg.GetLabels() {
		labels[k] = v
	}

	f.containers[id] = &pb.ContainerStatus{
		Id:        id,
		Metadata:  cfg.GetMetadata(),
		State:     pb.ContainerState_CONTAINER_CREATED,
		CreatedAt: f.nextCreated(),
		Image:     &pb.ImageSpec{Image: img.GetId(), UserSpecifiedImage: cfg.GetImage().GetUserSpecifiedImage()},
		ImageRef:  img.GetId(),
		Labels:    labels,
	}

	return &pb.CreateContainerResponse{ContainerId: id}, nil
}

func (f *fakeCRI) ctr(id string) (*pb.ContainerStatus, error) {
	if c, ok := f.containers[id]; ok {
		return c, nil
	}

	for full, c := range f.containers {
		if id != "" && strings.HasPrefix(full, id) {
			return c, nil
		}
	}

	return nil, status.Errorf(codes.NotFound, "an error occurred when try to find container %q: not found", id)
}

func (f *fakeCRI) StartContainer(_ context.Context, req *pb.StartContainerRequest) (*pb.StartContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	c, err := f.ctr(req.GetContainerId())
	if err != nil {
		return nil, err
	}

	if c.GetState() != pb.ContainerState_CONTAINER_CREATED {
		return nil, status.Errorf(codes.Unknown, "container %q is in %s state", c.GetId(), c.GetState())
	}

	c.State = pb.ContainerState_CONTAINER_RUNNING
	c.StartedAt = c.GetCreatedAt() + int64(time.Second)

	return &pb.StartContainerResponse{}, nil
}

func (f *fakeCRI) StopContainer(_ context.Context, req *pb.StopContainerRequest) (*pb.StopContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	c, err := f.ctr(req.GetContainerId())
	if err != nil {
		return nil, err
	}

	if c.GetState() == pb.ContainerState_CONTAINER_RUNNING {
		c.State = pb.ContainerState_CONTAINER_EXITED
		c.FinishedAt = c.GetStartedAt() + int64(time.Second)
	}

	return &pb.StopContainerResponse{}, nil
}

func (f *fakeCRI) RemoveContainer(_ context.Context, req *pb.RemoveContainerRequest) (*pb.RemoveContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	c, err := f.ctr(req.GetContainerId())
	if err != nil {
		return nil, err
	}

	delete(f.containers, c.GetId())

	return &pb.RemoveContainerResponse{}, nil
}

func (f *fakeCRI) ContainerStatus(_ context.Context, req *pb.ContainerStatusRequest) (*pb.ContainerStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	c, err := f.ctr(req.GetContainerId())
	if err != nil {
		return nil, err
	}

	return &pb.ContainerStatusResponse{Status: c}, nil
}

func (f *fakeCRI) ListContainers(_ context.Context, req *pb.ListContainersRequest) (*pb.ListContainersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	filter := req.GetFilter()
	out := []*pb.Container{}

	for id, c := range f.containers {
		if filter.GetId() != "" && !strings.HasPrefix(id, filter.GetId()) {
			continue
		}

		if filter.GetPodSandboxId() != "" && !strings.HasPrefix(c.GetLabels()["sandbox"], filter.GetPodSandboxId()) {
			continue
		}

		if filter.GetState() != nil && filter.GetState().GetState() != c.GetState() {
			continue
		}

		if !labelsMatch(filter.GetLabelSelector(), c.GetLabels()) {
			continue
		}

		out = append(out, &pb.Container{
			Id:           c.GetId(),
			PodSandboxId: c.GetLabels()["sandbox"],
			Metadata:     c.GetMetadata(),
			Image:        c.GetImage(),
			ImageRef:     c.GetImageRef(),
			State:        c.GetState(),
			CreatedAt:    c.GetCreatedAt(),
			Labels:       c.GetLabels(),
		})
	}

	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })

	return &pb.ListContainersResponse{Containers: out}, nil
}

// --- ImageService ---

func (f *fakeCRI) ImageFsInfo(context.Context, *pb.ImageFsInfoRequest) (*pb.ImageFsInfoResponse, error) {
	return &pb.ImageFsInfoResponse{}, nil
}

func (f *fakeCRI) ListImages(_ context.Context, req *pb.ListImagesRequest) (*pb.ListImagesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	out := []*pb.Image{}

	if name := req.GetFilter().GetImage().GetImage(); name != "" {
		if img := f.findImage(name); img != nil {
			out = append(out, img)
		}

		return &pb.ListImagesResponse{Images: out}, nil
	}

	for _, img := range f.images {
		out = append(out, img)
	}

	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })

	return &pb.ListImagesResponse{Images: out}, nil
}

func (f *fakeCRI) ImageStatus(_ context.Context, req *pb.ImageStatusRequest) (*pb.ImageStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	img := f.findImage(req.GetImage().GetImage())
	if img == nil {
		return &pb.ImageStatusResponse{}, nil
	}

	resp := &pb.ImageStatusResponse{Image: img}
	if req.GetVerbose() {
		resp.Info = map[string]string{"info": `{"chainID":"sha256:abc","imageSpec":{"os":"linux"}}`}
	}

	return resp, nil
}

func (f *fakeCRI) PullImage(_ context.Context, req *pb.PullImageRequest) (*pb.PullImageResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	f.lastPull = req

	ref := req.GetImage().GetImage()

	switch {
	case strings.Contains(ref, "denied"):
		return nil, status.Errorf(codes.Unknown, "failed to pull and unpack image %q: pulling from host denied by policy", ref)
	case strings.Contains(ref, "missing"):
		return nil, status.Errorf(codes.NotFound, "failed to resolve reference %q: not found", ref)
	}

	if !strings.Contains(ref, ":") {
		ref += ":latest"
	}

	img := f.findImage(ref)
	if img == nil {
		img = f.addImage(ref, 1234567, false)
	}

	return &pb.PullImageResponse{ImageRef: img.GetId()}, nil
}

func (f *fakeCRI) RemoveImage(_ context.Context, req *pb.RemoveImageRequest) (*pb.RemoveImageResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if img := f.findImage(req.GetImage().GetImage()); img != nil {
		delete(f.images, img.GetId())
	}

	return &pb.RemoveImageResponse{}, nil
}

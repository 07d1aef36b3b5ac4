package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pb "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCommands runs the harness's command lines against a small fake CRI server. With env
// CRICTL naming a real crictl, it runs them with that too and wants the same output and
// error text.
func TestCommands(t *testing.T) {
	steps := []struct{ args, want string }{
		{"version", "RuntimeApiVersion:  v1\n"},
		{"info", `"lastCNILoadStatus": "OK"`},
		{"pods -q", ""},
		{"pull $D/image", "ERR pulling image: pull $D/image: unauthorized"},
		{"pull --creds user:secret $D/image", "Image is up to date for sha256:1111\n"},
		{"inspecti -o json $D/image", `"pinned": true`},
		{"inspecti -o json $D/missing", `ERR no such image "$D/missing" present`},
		{"runp $D/pod.json", "pod-web\n"},
		{"runp $D/rejected.yaml", `ERR run pod sandbox: rpc error: code = Unknown desc = sandbox-guard: pod "default/web-2" rejected`},
		{"runp $D/nofile.json", "ERR load podSandboxConfig: config at $D/nofile.json not found"},
		{"pods -q", "pod-web\n"},
		{"create --no-pull pod-web $D/ctr.yaml $D/pod.json", "ctr-app\n"},
		{"start ctr-app", "ctr-app\n"},
		{"inspect -o json ctr-app", `"state": "CONTAINER_RUNNING"`},
		{"rm ctr-app", `ERR container "ctr-app" is running, please stop it first`},
		{"stop --timeout 10 ctr-app", "ctr-app\n"},
		{"inspect -o json ctr-app", `"exitCode": 3`},
		{"rm ctr-app", "ctr-app\n"},
		{"inspect ctr-app", `ERR get the status of containers: get container status: rpc error: code = NotFound desc = container "ctr-app" not found`},
		{"rmp pod-web", `ERR pod sandbox "pod-web" is running, please stop it first`},
		{"stopp pod-web", "Stopped sandbox pod-web\n"},
		{"rmp pod-web", "Removed sandbox pod-web\n"},
		{"--config $D/bad.yaml info", "ERR load config file: Config option 'runtime_endpoint' is not valid"},
		{"--config $D/none.yaml info", "ERR load config file: stat "},
	}
	var lines []string
	for _, s := range steps {
		lines = append(lines, s.args)
	}
	lite := script(t, lines, func(args []string) (string, error) {
		var out bytes.Buffer
		err := run(args, &out)
		return out.String(), err
	})
	for i, s := range steps {
		if got := lite[i]; !strings.Contains(got.text, strings.ReplaceAll(s.want, "$D", got.dir)) {
			t.Errorf("crictl-lite %s:\n%s\nwant it to contain %q", s.args, got.text, s.want)
		}
	}
	crictl := os.Getenv("CRICTL")
	if crictl == "" {
		t.Log("set CRICTL to compare with real crictl")
		return
	}
	fatal := regexp.MustCompile(`(?m)^time=\S+ level=fatal msg=(".*")$`)
	real := script(t, lines, func(args []string) (string, error) {
		var out, stderr bytes.Buffer
		cmd := exec.Command(crictl, args...)
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err == nil {
			return out.String(), nil
		}
		m := fatal.FindStringSubmatch(stderr.String())
		if m == nil {
			return out.String(), fmt.Errorf("unexpected stderr: %s", stderr.String())
		}
		msg, err := strconv.Unquote(m[1])
		if err != nil {
			return "", err
		}
		return out.String(), fmt.Errorf("%s", msg)
	})
	for i, s := range steps {
		if a, b := lite[i].norm(), real[i].norm(); a != b {
			t.Errorf("%s:\ncrictl-lite: %s\ncrictl:      %s", s.args, a, b)
		}
	}
}

type result struct{ dir, text string }

// norm is the result without what differs between crictl and crictl-lite by necessity: the
// run's directory, the program's (crictl looks for a configuration there) and the name of the
// Signal enumeration's zero value (crictl v1.36.0 has CRI API v0.36, crictl-lite v0.37).
func (r result) norm() string {
	s := regexp.MustCompile(`stat \S+/crictl.yaml`).ReplaceAllString(r.text, "stat PROGRAM-DIR/crictl.yaml")
	return strings.ReplaceAll(strings.ReplaceAll(s, r.dir, "$D"), `"RUNTIME_DEFAULT"`, `"SIGNAL_RUNTIME_DEFAULT"`)
}

// script runs command lines (with $D for a new directory) with crictl against a new fake CRI
// server and returns what each printed, followed by ERR and the error if it failed.
func script(t *testing.T, lines []string, crictl func(args []string) (string, error)) []result {
	dir := t.TempDir()
	sock := filepath.Join(dir, "cri.sock")
	files := map[string]string{
		"crictl.yaml":   fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%[1]s\ntimeout: 5\n", sock),
		"bad.yaml":      "runtime_endpoint: unix:///x\n",
		"pod.json":      `{"metadata": {"name": "web", "namespace": "default", "uid": "u1"}, "linux": {"cgroup_parent": "/x", "security_context": {"namespace_options": {"network": 2}}}}`,
		"rejected.yaml": "metadata: {name: web-2, namespace: default, uid: u2}\n",
		"ctr.yaml":      "metadata: {name: app}\nimage: {image: pause}\nlog_path: app.log\ncommand: [/pause]\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	f := &fakeCRI{dir: dir, pods: map[string]*pb.PodSandbox{}, ctrs: map[string]*pb.ContainerStatus{}}
	pb.RegisterRuntimeServiceServer(srv, f)
	pb.RegisterImageServiceServer(srv, f)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)

	var results []result
	for _, args := range lines {
		line := strings.Fields(strings.ReplaceAll(args, "$D", dir))
		if !strings.HasPrefix(line[0], "--config") {
			line = append([]string{"--config", filepath.Join(dir, "crictl.yaml")}, line...)
		}
		out, err := crictl(line)
		if err != nil {
			out += "ERR " + err.Error()
		}
		results = append(results, result{dir, out})
	}
	return results
}

// fakeCRI is just enough of a CRI runtime for the steps of TestCommands.
type fakeCRI struct {
	pb.UnimplementedRuntimeServiceServer
	pb.UnimplementedImageServiceServer
	dir  string
	mu   sync.Mutex
	pods map[string]*pb.PodSandbox
	ctrs map[string]*pb.ContainerStatus
}

func (f *fakeCRI) Version(context.Context, *pb.VersionRequest) (*pb.VersionResponse, error) {
	return &pb.VersionResponse{Version: "0.1.0", RuntimeName: "fake", RuntimeVersion: "v9", RuntimeApiVersion: "v1"}, nil
}

func (f *fakeCRI) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	return &pb.StatusResponse{
		Status:          &pb.RuntimeStatus{Conditions: []*pb.RuntimeCondition{{Type: "RuntimeReady", Status: true}, {Type: "NetworkReady", Status: true}}},
		Info:            map[string]string{"lastCNILoadStatus": "OK", "config": `{"sandboxImage":"pause","n":2}`},
		RuntimeHandlers: []*pb.RuntimeHandler{{Name: "runc", Features: &pb.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true}}},
	}, nil
}

func (f *fakeCRI) ImageFsInfo(context.Context, *pb.ImageFsInfoRequest) (*pb.ImageFsInfoResponse, error) {
	return &pb.ImageFsInfoResponse{}, nil
}

func (f *fakeCRI) PullImage(_ context.Context, r *pb.PullImageRequest) (*pb.PullImageResponse, error) {
	if r.GetAuth().GetUsername() != "user" || r.GetAuth().GetPassword() != "secret" {
		return nil, status.Errorf(codes.Unknown, "pull %s: unauthorized", r.GetImage().GetImage())
	}
	return &pb.PullImageResponse{ImageRef: "sha256:1111"}, nil
}

func (f *fakeCRI) ImageStatus(_ context.Context, r *pb.ImageStatusRequest) (*pb.ImageStatusResponse, error) {
	if name := r.GetImage().GetImage(); name == f.dir+"/image" {
		return &pb.ImageStatusResponse{Image: &pb.Image{Id: "sha256:1111", RepoTags: []string{name + ":latest"}, Size: 42, Pinned: true},
			Info: map[string]string{"info": `{"chainID":"sha256:2222"}`}}, nil
	}
	return &pb.ImageStatusResponse{}, nil
}

func (f *fakeCRI) RunPodSandbox(_ context.Context, r *pb.RunPodSandboxRequest) (*pb.RunPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	md := r.GetConfig().GetMetadata()
	if md.GetName() != "web" {
		return nil, status.Errorf(codes.Unknown, "sandbox-guard: pod %q rejected", md.GetNamespace()+"/"+md.GetName())
	}
	id := "pod-" + md.GetName()
	f.pods[id] = &pb.PodSandbox{Id: id, Metadata: md, State: pb.PodSandboxState_SANDBOX_READY, CreatedAt: 1}
	return &pb.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func (f *fakeCRI) pod(id string) (*pb.PodSandbox, error) {
	if p := f.pods[id]; p != nil {
		return p, nil
	}
	return nil, status.Errorf(codes.NotFound, "pod sandbox %q not found", id)
}

func (f *fakeCRI) ListPodSandbox(context.Context, *pb.ListPodSandboxRequest) (*pb.ListPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &pb.ListPodSandboxResponse{}
	for _, p := range f.pods {
		r.Items = append(r.Items, p)
	}
	return r, nil
}

func (f *fakeCRI) PodSandboxStatus(_ context.Context, r *pb.PodSandboxStatusRequest) (*pb.PodSandboxStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, err := f.pod(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	return &pb.PodSandboxStatusResponse{Status: &pb.PodSandboxStatus{Id: p.Id, Metadata: p.Metadata, State: p.State, CreatedAt: p.CreatedAt}}, nil
}

func (f *fakeCRI) StopPodSandbox(_ context.Context, r *pb.StopPodSandboxRequest) (*pb.StopPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, err := f.pod(r.GetPodSandboxId())
	if err == nil {
		p.State = pb.PodSandboxState_SANDBOX_NOTREADY
	}
	return &pb.StopPodSandboxResponse{}, err
}

func (f *fakeCRI) RemovePodSandbox(_ context.Context, r *pb.RemovePodSandboxRequest) (*pb.RemovePodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pods, r.GetPodSandboxId())
	return &pb.RemovePodSandboxResponse{}, nil
}

func (f *fakeCRI) CreateContainer(_ context.Context, r *pb.CreateContainerRequest) (*pb.CreateContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.pod(r.GetPodSandboxId()); err != nil {
		return nil, err
	}
	cfg := r.GetConfig()
	id := "ctr-" + cfg.GetMetadata().GetName()
	f.ctrs[id] = &pb.ContainerStatus{Id: id, Metadata: cfg.GetMetadata(), Image: cfg.GetImage(), ImageRef: "sha256:1111",
		State: pb.ContainerState_CONTAINER_CREATED, CreatedAt: 1_700_000_000_000_000_000, LogPath: cfg.GetLogPath()}
	return &pb.CreateContainerResponse{ContainerId: id}, nil
}

func (f *fakeCRI) ctr(id string, change func(c *pb.ContainerStatus)) (*pb.ContainerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.ctrs[id]
	if c == nil {
		return nil, status.Errorf(codes.NotFound, "container %q not found", id)
	}
	change(c)
	return c, nil
}

func (f *fakeCRI) StartContainer(_ context.Context, r *pb.StartContainerRequest) (*pb.StartContainerResponse, error) {
	_, err := f.ctr(r.GetContainerId(), func(c *pb.ContainerStatus) {
		c.State, c.StartedAt = pb.ContainerState_CONTAINER_RUNNING, 1_700_000_001_000_000_000
	})
	return &pb.StartContainerResponse{}, err
}

func (f *fakeCRI) StopContainer(_ context.Context, r *pb.StopContainerRequest) (*pb.StopContainerResponse, error) {
	_, err := f.ctr(r.GetContainerId(), func(c *pb.ContainerStatus) {
		c.State, c.FinishedAt, c.ExitCode, c.Reason = pb.ContainerState_CONTAINER_EXITED, 1_700_000_002_500_000_000, 3, "Error"
	})
	return &pb.StopContainerResponse{}, err
}

func (f *fakeCRI) RemoveContainer(_ context.Context, r *pb.RemoveContainerRequest) (*pb.RemoveContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ctrs, r.GetContainerId())
	return &pb.RemoveContainerResponse{}, nil
}

func (f *fakeCRI) ContainerStatus(_ context.Context, r *pb.ContainerStatusRequest) (*pb.ContainerStatusResponse, error) {
	c, err := f.ctr(r.GetContainerId(), func(*pb.ContainerStatus) {})
	if err != nil {
		return nil, err
	}
	return &pb.ContainerStatusResponse{Status: c, Info: map[string]string{"pid": "42", "info": `{"sandboxID":"pod-web"}`}}, nil
}

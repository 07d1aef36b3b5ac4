package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pb "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// criClient is a direct CRI gRPC client: for loops and polls where starting crictl for every
// call would measure crictl rather than the node (the pod start comparison uses crictl).
type criClient struct {
	conn *grpc.ClientConn
	rt   pb.RuntimeServiceClient
	img  pb.ImageServiceClient
	node *harness.Node
	ctrd *containerd.Client
}

func dialNode(n *harness.Node) (*criClient, error) {
	conn, err := grpc.NewClient("passthrough:///"+n.Socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}))
	if err != nil {
		return nil, err
	}
	ctrd, err := containerd.New(n.Socket, containerd.WithDefaultNamespace("k8s.io"))
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return &criClient{conn: conn, rt: pb.NewRuntimeServiceClient(conn), img: pb.NewImageServiceClient(conn), node: n, ctrd: ctrd}, nil
}

// Close ends a benchmark's connections; a failure to close them changes no result.
func (c *criClient) Close() {
	_ = c.conn.Close()
	_ = c.ctrd.Close()
}

// cycle runs, stops and removes one pod sandbox.
func (c *criClient) cycle(ctx context.Context, name string) error {
	uid := "uid-" + name
	cfg := &pb.PodSandboxConfig{
		Metadata:     &pb.PodSandboxMetadata{Name: name, Namespace: "default", Uid: uid},
		Labels:       map[string]string{"app": "bench"},
		LogDirectory: filepath.Join(c.node.Dir, "pods", name),
		Linux: &pb.LinuxPodSandboxConfig{CgroupParent: c.node.PodCgroupParent(),
			SecurityContext: &pb.LinuxSandboxSecurityContext{NamespaceOptions: &pb.NamespaceOption{Network: pb.NamespaceMode_POD}}},
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := c.rt.RunPodSandbox(ctx, &pb.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return fmt.Errorf("RunPodSandbox %s: %w", name, err)
	}
	if _, err := c.rt.StopPodSandbox(ctx, &pb.StopPodSandboxRequest{PodSandboxId: r.PodSandboxId}); err != nil {
		return fmt.Errorf("StopPodSandbox %s: %w", name, err)
	}
	if _, err := c.rt.RemovePodSandbox(ctx, &pb.RemovePodSandboxRequest{PodSandboxId: r.PodSandboxId}); err != nil {
		return fmt.Errorf("RemovePodSandbox %s: %w", name, err)
	}
	return nil
}

// imageState is CRI's answer about an image plus when containerd's record of it was created.
type imageState struct {
	present, pinned bool
	created         time.Time // zero when containerd has no record
}

func (c *criClient) image(ctx context.Context, ref string) (imageState, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var st imageState
	r, err := c.img.ImageStatus(ctx, &pb.ImageStatusRequest{Image: &pb.ImageSpec{Image: ref}})
	if err != nil {
		return st, err
	}
	if r.Image != nil {
		st.present, st.pinned = true, r.Image.Pinned
	}
	img, err := c.ctrd.ImageService().Get(ctx, ref)
	if err == nil {
		st.created = img.CreatedAt
	}
	return st, nil
}

// procMem is what /proc/<pid>/status says about a process's memory, in KiB.
type procMem struct{ rss, hwm, anon, file int64 }

func (m procMem) String() string {
	return fmt.Sprintf("VmRSS %.1f MiB (anon %.1f, file %.1f; peak VmHWM %.1f MiB)", float64(m.rss)/1024,
		float64(m.anon)/1024, float64(m.file)/1024, float64(m.hwm)/1024)
}

func readMem(pid int) (procMem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMem{}, err
	}
	var m procMem
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			m.rss = n
		case "VmHWM":
			m.hwm = n
		case "RssAnon":
			m.anon = n
		case "RssFile":
			m.file = n
		}
	}
	if m.rss == 0 {
		return m, fmt.Errorf("no VmRSS for pid %d", pid)
	}
	return m, nil
}

// pluginPID finds the pre-registered plugin of node n: the process running the binary in the
// node's plugin_path, whose parent is containerd.
func pluginPID(n *harness.Node) (int, error) { return pluginPIDOf(n, "10-sandbox-guard") }

// pluginPIDOf finds the pre-registered plugin called name (index-name) of node n.
func pluginPIDOf(n *harness.Node, name string) (int, error) {
	want := filepath.Join(n.PluginDir, name)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || strings.TrimSuffix(exe, " (deleted)") != want {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", ppid))
		if strings.TrimSpace(string(comm)) == "containerd" {
			found = append(found, pid)
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("no process runs %s with containerd as its parent", want)
	case 1:
		if syscall.Kill(found[0], 0) != nil {
			return 0, fmt.Errorf("plugin pid %d gone", found[0])
		}
		return found[0], nil
	}
	return 0, fmt.Errorf("several plugin processes: %v", found)
}

// Command crictl-lite is the CRI client the end-to-end harness builds when env CRICTL is not
// set: `crictl-lite [--config FILE] COMMAND [FLAGS] ARGS` for the crictl v1.36.0 commands in
// the table below, answering like crictl, with the same output, and on failure the same
// logrus line on stderr (level=fatal msg="run pod sandbox: rpc error: code = ... desc = ...")
// and exit status 1. FILE is crictl's configuration (default /etc/crictl.yaml); pod and
// container configurations are read like crictl reads them (sigs.k8s.io/yaml into the CRI v1
// messages, snake_case names). Each call has cri-client's timeout: the configured one (2s by
// default), twice that for runp, plus the grace period for stop, none for pull.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	pb "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"
	yaml3 "sigs.k8s.io/yaml/goyaml.v3"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		logrus.Fatal(err) // crictl's report of every error: level=fatal msg="...", exit status 1
	}
}

// client holds the settings, flags and connections of one invocation.
type client struct {
	out                    io.Writer
	runtimeEP, imageEP     string
	timeout                time.Duration
	pullOnCreate           bool
	output, creds, handler string // -o, --creds, -r
	quiet, noPull          bool   // -q, --no-pull
	grace                  int64  // stop -t
	rt                     pb.RuntimeServiceClient
	img                    pb.ImageServiceClient
	docs                   []map[string]any // inspect and inspecti output
}

// command is one crictl command.
type command struct {
	usage   string
	flags   string // the flags it takes
	nargs   int    // exactly this many arguments, or at least one if -1
	service string // the service it connects to first: runtime, image or none
	run     func(c *client, args []string) error
	each    func(c *client, id string) error // run for every argument in turn, if run is nil
}

var commands = map[string]command{
	"info":     {usage: "[-o json|yaml] [-q]", flags: "o output q quiet", service: "runtime", run: info},
	"version":  {service: "runtime", run: version},
	"pods":     {usage: "-q", flags: "q quiet", service: "runtime", run: pods},
	"runp":     {usage: "[-r HANDLER] POD.json", flags: "r runtime", nargs: 1, service: "runtime", run: runp},
	"stopp":    {usage: "POD-ID...", nargs: -1, service: "runtime", each: stopp},
	"rmp":      {usage: "POD-ID...", nargs: -1, service: "runtime", each: rmp},
	"pull":     {usage: "[--creds USER[:PASSWORD]] IMAGE", flags: "creds", nargs: 1, service: "image", run: pull},
	"inspecti": {usage: "[-o json|yaml] [-q] IMAGE...", flags: "o output q quiet", nargs: -1, service: "image", each: inspecti},
	"create": {usage: "[--no-pull] [--creds USER[:PASSWORD]] POD-ID CONTAINER.json POD.json", flags: "no-pull creds",
		nargs: 3, service: "runtime", run: create},
	"start":   {usage: "ID...", nargs: -1, service: "runtime", each: start},
	"inspect": {usage: "[-o json|yaml] [-q] ID...", flags: "o output q quiet", nargs: -1, service: "runtime", each: inspect},
	"stop":    {usage: "[-t SECONDS] ID...", flags: "t timeout", nargs: -1, service: "runtime", each: stop},
	"rm":      {usage: "ID...", nargs: -1, service: "runtime", each: rm},
}

// run executes one command line (without the program name).
func run(args []string, out io.Writer) error {
	g := flag.NewFlagSet("crictl", flag.ContinueOnError)
	g.SetOutput(io.Discard)
	config := g.String("config", "", "")
	g.StringVar(config, "c", "", "")
	if err := g.Parse(args); err != nil {
		return err
	}
	c := &client{out: out, runtimeEP: "unix:///run/containerd/containerd.sock", timeout: 2 * time.Second, output: "json"}
	if err := c.configure(cmp.Or(*config, "/etc/crictl.yaml"), *config != ""); err != nil {
		return err
	}
	cmd, ok := commands[g.Arg(0)]
	if !ok {
		return fmt.Errorf("usage: crictl [--config FILE] COMMAND [FLAGS] ARGS; crictl-lite has no command %q", g.Arg(0))
	}
	usage := fmt.Errorf("usage: crictl %s %s", g.Arg(0), cmd.usage)
	fs := flag.NewFlagSet(g.Arg(0), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	vars := map[string]any{"o": &c.output, "output": &c.output, "q": &c.quiet, "quiet": &c.quiet, "creds": &c.creds,
		"no-pull": &c.noPull, "r": &c.handler, "runtime": &c.handler, "t": &c.grace, "timeout": &c.grace}
	for _, name := range strings.Fields(cmd.flags) {
		switch v := vars[name].(type) {
		case *string:
			fs.StringVar(v, name, *v, "")
		case *bool:
			fs.BoolVar(v, name, false, "")
		case *int64:
			fs.Int64Var(v, name, 0, "")
		}
	}
	if err := fs.Parse(g.Args()[1:]); err != nil {
		return fmt.Errorf("%w: %w", err, usage)
	}
	if n := fs.NArg(); (cmd.nargs < 0 && n == 0) || (cmd.nargs >= 0 && n != cmd.nargs) {
		return usage
	}
	if err := c.connect(cmd.service); err != nil {
		return err
	} else if cmd.run != nil {
		return cmd.run(c, fs.Args())
	}
	for _, id := range fs.Args() {
		if err := cmd.each(c, id); err != nil {
			return err
		}
	}
	if c.docs == nil {
		return nil
	}
	return c.print(c.docs...)
}

// configure reads crictl's configuration file. A missing or broken file is an error only if
// it was named on the command line, as with crictl.
func (c *client) configure(path string, explicit bool) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		exe, _ := os.Executable()
		logrus.Warnf("Config %q does not exist, trying next: %q", path, filepath.Join(filepath.Dir(exe), "crictl.yaml"))
		path = filepath.Join(filepath.Dir(exe), "crictl.yaml")
	}
	_, err := os.Stat(path) // crictl's error names the stat
	b, _ := os.ReadFile(path)
	var doc map[string]string // every scalar as written, like crictl's walk over the YAML nodes
	if err == nil {
		err = yaml3.Unmarshal(b, &doc)
	}
	if err != nil && explicit {
		return fmt.Errorf("load config file: %w", err)
	} else if err != nil {
		return nil
	}
	for k, v := range doc {
		var n int
		switch k {
		case "runtime-endpoint":
			c.runtimeEP = v
		case "image-endpoint":
			c.imageEP = v
		case "timeout":
			if n, err = strconv.Atoi(v); n > 0 {
				c.timeout = time.Duration(n) * time.Second
			}
		case "pull-image-on-create":
			c.pullOnCreate, err = strconv.ParseBool(v)
		case "debug", "disable-pull-on-run":
			_, err = strconv.ParseBool(v)
		default:
			return fmt.Errorf("load config file: Config option '%s' is not valid", k)
		}
		if err != nil {
			return fmt.Errorf("load config file: parsing config option '%s': %w", k, err)
		}
	}
	return nil
}

// connect connects to the runtime or image service (or neither, if service is empty) like
// cri-client: the connection validated by a Version or ImageFsInfo call.
func (c *client) connect(service string) error {
	endpoint, method, req, reply := c.runtimeEP, pb.RuntimeService_Version_FullMethodName, any(&pb.VersionRequest{}), any(&pb.VersionResponse{})
	switch service {
	case "image":
		endpoint, method, req, reply = cmp.Or(c.imageEP, c.runtimeEP), pb.ImageService_ImageFsInfo_FullMethodName, &pb.ImageFsInfoRequest{}, &pb.ImageFsInfoResponse{}
	case "":
		return nil
	}
	target := endpoint
	if !strings.Contains(target, "://") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)), grpc.WithUnaryInterceptor(c.deadline))
	if err != nil {
		return err
	} else if err := conn.Invoke(bg, method, req, reply); err != nil {
		return fmt.Errorf("validate service connection: validate CRI v1 %s API for endpoint %q: %w", service, endpoint, err)
	}
	if service == "image" {
		c.img = pb.NewImageServiceClient(conn)
	} else {
		c.rt = pb.NewRuntimeServiceClient(conn)
	}
	return nil
}

// deadline gives each call cri-client's timeout.
func (c *client) deadline(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	timeout := c.timeout
	switch r := req.(type) {
	case *pb.RunPodSandboxRequest:
		timeout *= 2
	case *pb.StopContainerRequest:
		timeout += time.Duration(r.GetTimeout()) * time.Second
	case *pb.PullImageRequest:
		return invoke(ctx, method, req, reply, cc, opts...)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return invoke(ctx, method, req, reply, cc, opts...)
}

var bg = context.Background()

func info(c *client, _ []string) error {
	r, err := c.rt.Status(bg, &pb.StatusRequest{Verbose: !c.quiet})
	if err != nil {
		return fmt.Errorf("getting status of runtime: %w", err)
	}
	doc := statusDoc(r.GetStatus(), r.GetInfo())
	// crictl encodes these two with encoding/json (snake_case names), not protojson.
	for k, v := range map[string]any{"runtimeHandlers": r.GetRuntimeHandlers(), "features": r.GetFeatures()} {
		var val any
		if b, err := json.Marshal(v); err == nil && json.Unmarshal(b, &val) == nil && val != nil {
			doc[k] = val
		}
	}
	return c.print(doc)
}

func version(c *client, _ []string) error {
	r, err := c.rt.Version(bg, &pb.VersionRequest{Version: "v1"})
	if err != nil {
		return fmt.Errorf("getting the runtime version: %w", err)
	}
	_, err = fmt.Fprintf(c.out, "Version:  %s\nRuntimeName:  %s\nRuntimeVersion:  %s\nRuntimeApiVersion:  %s\n",
		r.GetVersion(), r.GetRuntimeName(), r.GetRuntimeVersion(), r.GetRuntimeApiVersion())
	return err
}

func pods(c *client, _ []string) error {
	if !c.quiet {
		return errors.New("crictl-lite lists pods only with -q")
	}
	r, err := c.rt.ListPodSandbox(bg, &pb.ListPodSandboxRequest{Filter: &pb.PodSandboxFilter{}})
	if err != nil {
		return fmt.Errorf("list pod sandboxes: call list sandboxes RPC: %w", err)
	}
	items := r.GetItems() // newest first, as crictl lists them
	slices.SortStableFunc(items, func(a, b *pb.PodSandbox) int { return cmp.Compare(b.GetCreatedAt(), a.GetCreatedAt()) })
	for _, p := range items {
		fmt.Fprintln(c.out, p.GetId())
	}
	return nil
}

func runp(c *client, args []string) error {
	cfg, err := loadPodConfig(args[0])
	if err != nil {
		return fmt.Errorf("load podSandboxConfig: %w", err)
	}
	r, err := c.rt.RunPodSandbox(bg, &pb.RunPodSandboxRequest{Config: cfg, RuntimeHandler: c.handler})
	return c.done(err, r.GetPodSandboxId(), "run pod sandbox: %w")
}

func stopp(c *client, id string) error {
	_, err := c.rt.StopPodSandbox(bg, &pb.StopPodSandboxRequest{PodSandboxId: id})
	return c.done(err, "Stopped sandbox "+id, "stopping the pod sandbox %q: %w", id)
}

func rmp(c *client, id string) error {
	st, err := c.rt.PodSandboxStatus(bg, &pb.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		return fmt.Errorf("getting sandbox status of pod %q: %w", id, err)
	}
	if st.GetStatus().GetState() == pb.PodSandboxState_SANDBOX_READY {
		return fmt.Errorf("pod sandbox %q is running, please stop it first", id)
	}
	_, err = c.rt.RemovePodSandbox(bg, &pb.RemovePodSandboxRequest{PodSandboxId: id})
	return c.done(err, "Removed sandbox "+id, "removing the pod sandbox %q: %w", id)
}

func pull(c *client, args []string) error {
	ref, err := c.pull(args[0], nil)
	return c.done(err, "Image is up to date for "+ref, "pulling image: %w")
}

// pull pulls an image with the --creds credentials and returns its reference. As in
// cri-client, an Unknown gRPC status is reduced to its message.
func (c *client) pull(image string, pod *pb.PodSandboxConfig) (string, error) {
	var auth *pb.AuthConfig
	if creds := cmp.Or(c.creds, os.Getenv("CRICTL_CREDS")); creds != "" {
		user, password, _ := strings.Cut(creds, ":")
		auth = &pb.AuthConfig{Username: user, Password: password}
	}
	r, err := c.img.PullImage(bg, &pb.PullImageRequest{Image: &pb.ImageSpec{Image: image}, Auth: auth, SandboxConfig: pod})
	if s, ok := status.FromError(err); err != nil && ok && s.Code() == codes.Unknown {
		return "", errors.New(s.Message())
	} else if err != nil {
		return "", err
	}
	if r.GetImageRef() == "" {
		return "", fmt.Errorf("imageRef of image %q is not set", image)
	}
	return r.GetImageRef(), nil
}

func inspecti(c *client, name string) error {
	r, err := c.img.ImageStatus(bg, &pb.ImageStatusRequest{Image: &pb.ImageSpec{Image: name}, Verbose: !c.quiet})
	if err != nil {
		return fmt.Errorf("image status for %q request: %w", name, err)
	}
	if r.GetImage() == nil {
		return fmt.Errorf("no such image %q present", name)
	}
	c.docs = append(c.docs, statusDoc(r.GetImage(), r.GetInfo()))
	return nil
}

// create creates a container as crictl does, pulling its image first if pull-image-on-create
// is set and --no-pull is not.
func create(c *client, args []string) error {
	cfg, pod, err := loadContainerConfig(args[1], args[2])
	if err == nil && c.pullOnCreate && !c.noPull {
		if err := c.connect("image"); err != nil {
			return err
		}
		logrus.Infof("Pulling container image: %s", cfg.Image.Image)
		_, err = c.pull(cfg.Image.Image, pod)
	}
	var r *pb.CreateContainerResponse
	if err == nil {
		r, err = c.rt.CreateContainer(bg, &pb.CreateContainerRequest{PodSandboxId: args[0], Config: cfg, SandboxConfig: pod})
	}
	return c.done(err, r.GetContainerId(), "creating container: %w")
}

// loadContainerConfig reads a container's and its pod's configurations and checks them like
// crictl does.
func loadContainerConfig(ctrFile, podFile string) (*pb.ContainerConfig, *pb.PodSandboxConfig, error) {
	cfg := &pb.ContainerConfig{}
	if err := readConfig(ctrFile, cfg); err != nil {
		return nil, nil, err
	}
	switch {
	case cfg.GetMetadata() == nil:
		return nil, nil, errors.New("metadata is not set")
	case cfg.GetMetadata().GetName() == "":
		return nil, nil, fmt.Errorf("name is not in metadata %q", cfg.GetMetadata())
	case cfg.GetImage() == nil:
		return nil, nil, errors.New("image is not set")
	case cfg.GetImage().GetImage() == "":
		return nil, nil, fmt.Errorf("image field is not set in image %q", cfg.GetImage())
	}
	cfg.Image.UserSpecifiedImage = cmp.Or(cfg.Image.UserSpecifiedImage, cfg.Image.Image)
	pod, err := loadPodConfig(podFile)
	return cfg, pod, err
}

func start(c *client, id string) error {
	_, err := c.rt.StartContainer(bg, &pb.StartContainerRequest{ContainerId: id})
	return c.done(err, id, "starting the container %q: %w", id)
}

func inspect(c *client, id string) error {
	r, err := c.rt.ContainerStatus(bg, &pb.ContainerStatusRequest{ContainerId: id, Verbose: !c.quiet})
	if err != nil {
		return fmt.Errorf("get the status of containers: get container status: %w", err)
	}
	// crictl lists every field of the status, unset messages as null, and shows the times as
	// RFC 3339 text, those not reached yet as the zero time.
	doc := statusDoc(r.GetStatus(), r.GetInfo())
	cs, st := r.GetStatus(), doc["status"].(map[string]any)
	for fields, i := cs.ProtoReflect().Descriptor().Fields(), 0; i < fields.Len(); i++ {
		st[fields.Get(i).JSONName()] = st[fields.Get(i).JSONName()]
	}
	var started, finished time.Time
	if cs.GetState() != pb.ContainerState_CONTAINER_CREATED {
		started = time.Unix(0, cs.GetStartedAt())
	}
	if cs.GetState() == pb.ContainerState_CONTAINER_EXITED || (cs.GetState() == pb.ContainerState_CONTAINER_UNKNOWN && cs.GetFinishedAt() > 0) {
		finished = time.Unix(0, cs.GetFinishedAt())
	}
	st["createdAt"] = time.Unix(0, cs.GetCreatedAt()).Format(time.RFC3339Nano)
	st["startedAt"] = started.Format(time.RFC3339Nano)
	st["finishedAt"] = finished.Format(time.RFC3339Nano)
	c.docs = append(c.docs, doc)
	return nil
}

func stop(c *client, id string) error {
	_, err := c.rt.StopContainer(bg, &pb.StopContainerRequest{ContainerId: id, Timeout: c.grace})
	return c.done(err, id, "stopping the container %q: %w", id)
}

func rm(c *client, id string) error {
	st, err := c.rt.ContainerStatus(bg, &pb.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		return fmt.Errorf("getting container status %q: %w", id, err)
	}
	if st.GetStatus().GetState() == pb.ContainerState_CONTAINER_RUNNING {
		return fmt.Errorf("container %q is running, please stop it first", id)
	}
	_, err = c.rt.RemoveContainer(bg, &pb.RemoveContainerRequest{ContainerId: id})
	return c.done(err, id, "removing container %q: %w", id) // (crictl removes the log file too)
}

// done ends a command: err wrapped by format (with args before err) if there is one, else
// line printed.
func (c *client) done(err error, line, format string, args ...any) error {
	if err != nil {
		return fmt.Errorf(format, append(args, err)...)
	}
	_, err = fmt.Fprintln(c.out, line)
	return err
}

// loadPodConfig reads a pod sandbox configuration and checks it like crictl does.
func loadPodConfig(path string) (*pb.PodSandboxConfig, error) {
	cfg := &pb.PodSandboxConfig{}
	if err := readConfig(path, cfg); err != nil {
		return nil, err
	}
	if cfg.GetMetadata() == nil {
		return nil, errors.New("metadata is not set")
	}
	if cfg.Metadata.Uid == "" {
		cfg.Metadata.Uid = rand.Text() // crictl makes up a UUID
	}
	if cfg.Metadata.Name == "" || cfg.Metadata.Namespace == "" {
		return nil, fmt.Errorf("name or namespace is not in metadata %q", cfg.GetMetadata())
	}
	if cfg.GetLinux() != nil && cfg.GetLinux().GetCgroupParent() == "" {
		logrus.Warn("cgroup_parent is not set. Use `runtime-config` to get the runtime cgroup driver")
	}
	return cfg, nil
}

// readConfig decodes a JSON or YAML file into a CRI message with sigs.k8s.io/yaml, so with the
// messages' snake_case JSON names, as crictl does.
func readConfig(path string, into any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("config at %s not found", path)
	} else if err != nil {
		return err
	}
	return yaml.Unmarshal(b, into)
}

// statusDoc is crictl's document for one status: {"status": <protojson of the message, with
// default values>, <each verbose info key>: <its JSON object, or its text unquoted>}.
func statusDoc(msg proto.Message, info map[string]string) map[string]any {
	var st map[string]any
	b, _ := protojson.MarshalOptions{EmitDefaultValues: true}.Marshal(msg) // cannot fail for CRI messages
	_ = json.Unmarshal(b, &st)
	doc := map[string]any{"status": st}
	for k, v := range info {
		var obj map[string]any
		if doc[k] = strings.Trim(v, `"`); strings.HasPrefix(v, "{") && json.Unmarshal([]byte(v), &obj) == nil {
			doc[k] = obj
		}
	}
	return doc
}

// print writes status documents as crictl does: one alone, several as an array, keys sorted,
// indented by two spaces (or as YAML).
func (c *client) print(docs ...map[string]any) error {
	var v any = docs
	if len(docs) == 1 {
		v = docs[0]
	}
	b, err := json.MarshalIndent(v, "", "  ") // cannot fail: the documents came from JSON
	if c.output == "yaml" {
		b, err = yaml.JSONToYAML(b)
	} else if c.output != "json" {
		return fmt.Errorf("unsupported format: %q", c.output)
	}
	fmt.Fprintln(c.out, string(b))
	return err
}

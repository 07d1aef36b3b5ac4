package main

// The subcommands. Each mirrors the crictl v1.36.0 command of the same name
// (cmd/crictl/{sandbox,container,image,info,version,util}.go): flag names, argument checks,
// error wrapping and output.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	pb "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"
)

type command struct {
	name      string
	aliases   []string
	usage     string
	argsUsage string
	shortOpts bool
	flags     []flagSpec
	action    func(c *cmdContext) error
}

var helpFlag = flagSpec{kind: boolFlag, name: "help", aliases: []string{"h"}, usage: "show help"}

func (cmd *command) allFlags() []flagSpec { return append(slices.Clone(cmd.flags), helpFlag) }

func lookupCommand(name string) *command {
	for _, c := range commands {
		if c.name == name || slices.Contains(c.aliases, name) {
			return c
		}
	}

	return nil
}

type cmdContext struct {
	*app
	*flags

	cmd *command
}

func (c *cmdContext) NArg() int { return len(c.Args()) }

func (c *cmdContext) showHelp() error {
	c.printCommandHelp(c.cmd, c.cmd.allFlags())

	return errHelpShown
}

// logFatalf is the stdlib log.Fatalf crictl calls for a few bad flag values.
func (c *cmdContext) logFatalf(format string, args ...any) error {
	log.New(c.errOut, "", log.LstdFlags).Printf(format, args...)

	return &exitError{code: 1}
}

var (
	outputFlag = func(def, usage string) flagSpec {
		return flagSpec{kind: stringFlag, name: "output", aliases: []string{"o"}, value: def, usage: usage}
	}
	quietFlag = func(usage string) flagSpec {
		return flagSpec{kind: boolFlag, name: "quiet", aliases: []string{"q"}, usage: usage}
	}
	templateFlag = flagSpec{kind: stringFlag, name: "template", usage: "The template string is only used when output is go-template (not supported by crictl-lite)"}
	labelFlag    = flagSpec{kind: sliceFlag, name: "label", usage: "Filter by key=value label"}
	latestFlag   = flagSpec{kind: boolFlag, name: "latest", aliases: []string{"l"}, usage: "Show the most recently created one"}
	lastFlag     = flagSpec{kind: intFlag, name: "last", aliases: []string{"n"}, usage: "Show last n recently created ones. Set 0 for unlimited"}
	noTruncFlag  = flagSpec{kind: boolFlag, name: "no-trunc", usage: "Show output without truncating the ID"}
	pullTimeout  = flagSpec{kind: durationFlag, name: "pull-timeout", aliases: []string{"pt"}, env: []string{"CRICTL_PULL_TIMEOUT"},
		usage: "Maximum time to be used for pulling the image, disabled if set to 0s"}
	credsFlag    = flagSpec{kind: stringFlag, name: "creds", usage: "Use `USERNAME[:PASSWORD]` for accessing the registry"}
	authFlag     = flagSpec{kind: stringFlag, name: "auth", usage: "Use `AUTH_STRING` (base64 'USERNAME[:PASSWORD]') for accessing the registry"}
	usernameFlag = flagSpec{kind: stringFlag, name: "username", usage: "Not supported by crictl-lite (interactive password prompt)"}
)

// commands, sorted by name as crictl sorts them.
var commands = []*command{
	{
		name: "create", usage: "Create a new container", argsUsage: "POD container-config.[json|yaml] pod-config.[json|yaml]",
		flags: []flagSpec{
			{kind: boolFlag, name: "no-pull", usage: "Do not pull the image on container creation"},
			{kind: boolFlag, name: "with-pull", usage: "Pull the image on container creation"},
			credsFlag, authFlag, usernameFlag,
			{kind: durationFlag, name: "cancel-timeout", aliases: []string{"T"}, usage: "Seconds to wait for a container create request to complete before cancelling the request"},
			pullTimeout,
		},
		action: createContainer,
	},
	{
		name: "images", aliases: []string{"image", "img"}, usage: "List images", argsUsage: "[REPOSITORY[:TAG]]", shortOpts: true,
		flags: []flagSpec{
			{kind: boolFlag, name: "verbose", aliases: []string{"v"}, usage: "Show verbose info for images"},
			quietFlag("Only show image IDs"),
			{kind: sliceFlag, name: "filter", aliases: []string{"f"}, usage: "Not supported by crictl-lite"},
			outputFlag("", "Output format, One of: json|yaml|table"),
			{kind: boolFlag, name: "digests", usage: "Show digests"},
			noTruncFlag,
			{kind: boolFlag, name: "pinned", usage: "Show whether the image is pinned or not"},
		},
		action: listImages,
	},
	{
		name: "info", usage: "Display information of the container runtime", shortOpts: true,
		flags:  []flagSpec{outputFlag("json", "Output format, One of: json|yaml"), quietFlag("Do not show verbose information"), templateFlag},
		action: runtimeInfo,
	},
	{
		name: "inspecti", usage: "Return the status of one or more images", argsUsage: "IMAGE-ID [IMAGE-ID...]", shortOpts: true,
		flags: []flagSpec{
			outputFlag("", "Output format, One of: json|yaml|table"), quietFlag("Do not show verbose information"), templateFlag,
			{kind: stringFlag, name: "name", usage: "Filter by image name"},
			{kind: sliceFlag, name: "filter", aliases: []string{"f"}, usage: "Not supported by crictl-lite"},
		},
		action: inspectImages,
	},
	{
		name: "pods", usage: "List pods", shortOpts: true,
		flags: []flagSpec{
			{kind: stringFlag, name: "id", usage: "filter by pod id"},
			{kind: stringFlag, name: "name", usage: "Filter by pod name regular expression pattern"},
			{kind: stringFlag, name: "namespace", usage: "Filter by pod namespace regular expression pattern"},
			{kind: stringFlag, name: "state", aliases: []string{"s"}, usage: "Filter by pod state"},
			labelFlag,
			{kind: boolFlag, name: "verbose", aliases: []string{"v"}, usage: "Show verbose info for pods"},
			quietFlag("List only pod IDs"),
			outputFlag("table", "Output format, One of: json|yaml|table"),
			latestFlag, lastFlag, noTruncFlag,
		},
		action: listPods,
	},
	{
		name: "ps", usage: "List containers", shortOpts: true,
		flags: []flagSpec{
			{kind: boolFlag, name: "verbose", aliases: []string{"v"}, usage: "Show verbose information for containers"},
			{kind: stringFlag, name: "id", usage: "Filter by container id"},
			{kind: stringFlag, name: "name", usage: "Filter by container name regular expression pattern"},
			{kind: stringFlag, name: "pod", aliases: []string{"p"}, usage: "Filter by pod id"},
			{kind: stringFlag, name: "image", usage: "Filter by container image"},
			{kind: stringFlag, name: "state", aliases: []string{"s"}, usage: "Filter by container state"},
			labelFlag,
			quietFlag("Only display container IDs"),
			outputFlag("table", "Output format, One of: json|yaml|table"),
			{kind: boolFlag, name: "all", aliases: []string{"a"}, usage: "Show all containers"},
			latestFlag, lastFlag, noTruncFlag,
			{kind: boolFlag, name: "resolve-image-path", aliases: []string{"r"}, usage: "Show image path instead of image id"},
			{kind: stringFlag, name: "namespace", usage: "Filter by pod namespace regular expression pattern"},
		},
		action: listContainers,
	},
	{
		name: "pull", usage: "Pull an image from a registry", argsUsage: "NAME[:TAG|@DIGEST]", shortOpts: true,
		flags: []flagSpec{
			{kind: stringFlag, name: "creds", env: []string{"CRICTL_CREDS"}, usage: credsFlag.usage},
			{kind: stringFlag, name: "auth", env: []string{"CRICTL_AUTH"}, usage: authFlag.usage},
			{kind: stringFlag, name: "username", aliases: []string{"u"}, usage: usernameFlag.usage},
			{kind: stringFlag, name: "pod-config", usage: "Use `pod-config.[json|yaml]` to override the pull context"},
			{kind: sliceFlag, name: "annotation", aliases: []string{"a"}, usage: "Annotation to be set on the pulled image"},
			pullTimeout,
		},
		action: pullImage,
	},
	{
		name: "rm", usage: "Remove one or more containers", argsUsage: "CONTAINER-ID [CONTAINER-ID...]", shortOpts: true,
		flags: []flagSpec{
			{kind: boolFlag, name: "force", aliases: []string{"f"}, usage: "Force removal of the container, disregarding if running"},
			{kind: boolFlag, name: "keep-logs", aliases: []string{"k"}, usage: "Preserve the container log file and its rotations"},
			{kind: boolFlag, name: "all", aliases: []string{"a"}, usage: "Remove all containers"},
		},
		action: removeContainers,
	},
	{
		name: "rmi", usage: "Remove one or more images", argsUsage: "IMAGE-ID [IMAGE-ID...]", shortOpts: true,
		flags: []flagSpec{
			{kind: boolFlag, name: "all", aliases: []string{"a"}, usage: "Remove all images"},
			{kind: boolFlag, name: "prune", aliases: []string{"q"}, usage: "Remove all unused images"},
		},
		action: removeImages,
	},
	{
		name: "rmp", usage: "Remove one or more pods", argsUsage: "POD-ID [POD-ID...]", shortOpts: true,
		flags: []flagSpec{
			{kind: boolFlag, name: "force", aliases: []string{"f"}, usage: "Force removal of the pod sandbox, disregarding if running"},
			{kind: boolFlag, name: "all", aliases: []string{"a"}, usage: "Remove all pods"},
		},
		action: removePods,
	},
	{
		name: "runp", usage: "Run a new pod", argsUsage: "pod-config.[json|yaml]",
		flags: []flagSpec{
			{kind: stringFlag, name: "runtime", aliases: []string{"r"}, usage: "Runtime handler to use. Available options are defined by the container runtime."},
			{kind: durationFlag, name: "cancel-timeout", aliases: []string{"T"}, usage: "Seconds to wait for a run pod sandbox request to complete before cancelling the request"},
		},
		action: runPod,
	},
	{name: "start", usage: "Start one or more created containers", argsUsage: "CONTAINER-ID [CONTAINER-ID...]", action: startContainers},
	{
		name: "stop", usage: "Stop one or more running containers", argsUsage: "CONTAINER-ID [CONTAINER-ID...]", shortOpts: true,
		flags: []flagSpec{
			{kind: intFlag, name: "timeout", aliases: []string{"t"}, usage: "Seconds to wait to kill the container after a graceful stop is requested"},
			{kind: boolFlag, name: "all", aliases: []string{"a"}, usage: "Stop all running containers"},
		},
		action: stopContainers,
	},
	{name: "stopp", usage: "Stop one or more running pods", argsUsage: "POD-ID [POD-ID...]", action: stopPods},
	{name: "version", usage: "Display runtime version information", action: runtimeVersion},
}

// --- pods ---

func runPod(c *cmdContext) error {
	spec := ""
	if c.NArg() > 0 {
		spec = c.Args()[0]
	}

	if c.NArg() != 1 || spec == "" {
		return c.showHelp()
	}

	rc, err := c.runtimeService(c.Duration("cancel-timeout"))
	if err != nil {
		return err
	}

	cfg, err := c.loadPodSandboxConfig(spec)
	if err != nil {
		return fmt.Errorf("load podSandboxConfig: %w", err)
	}

	id, err := rc.RunPodSandbox(c.ctx, cfg, c.String("runtime"))
	if err != nil {
		return fmt.Errorf("run pod sandbox: %w", err)
	}

	fmt.Fprintln(c.out, id)

	return nil
}

func stopPods(c *cmdContext) error {
	if c.NArg() == 0 {
		return c.showHelp()
	}

	rc, err := c.runtimeService(0)
	if err != nil {
		return err
	}

	for _, id := range c.Args() {
		if err := c.stopPod(rc, id); err != nil {
			return fmt.Errorf("stopping the pod sandbox %q: %w", id, err)
		}
	}

	return nil
}

func (c *cmdContext) stopPod(rc *runtimeClient, id string) error {
	if id == "" {
		return errors.New("ID cannot be empty")
	}

	if err := rc.StopPodSandbox(c.ctx, id); err != nil {
		return err
	}

	fmt.Fprintf(c.out, "Stopped sandbox %s\n", id)

	return nil
}

func removePods(c *cmdContext) error {
	rc, err := c.runtimeService(0)
	if err != nil {
		return err
	}

	ids := c.Args()

	if c.Bool("all") {
		pods, err := rc.ListPodSandbox(c.ctx, nil)
		if err != nil {
			return err
		}

		ids = nil
		for _, p := range pods {
			ids = append(ids, p.GetId())
		}
	}

	if len(ids) == 0 {
		if c.Bool("all") {
			c.log.Info("No pods to remove")

			return nil
		}

		return c.showHelp()
	}

	// crictl removes the pods concurrently; crictl-lite does it in order.
	var errs []error

	for _, id := range ids {
		errs = append(errs, c.removePod(rc, id))
	}

	return errors.Join(errs...)
}

func (c *cmdContext) removePod(rc *runtimeClient, id string) error {
	resp, err := rc.PodSandboxStatus(c.ctx, id, false)
	if err != nil {
		return fmt.Errorf("getting sandbox status of pod %q: %w", id, err)
	}

	if resp.GetStatus().GetState() == pb.PodSandboxState_SANDBOX_READY {
		if !c.Bool("force") {
			return fmt.Errorf("pod sandbox %q is running, please stop it first", id)
		}

		if err := c.stopPod(rc, id); err != nil {
			return fmt.Errorf("stopping the pod sandbox %q failed: %w", id, err)
		}
	}

	if id == "" {
		return fmt.Errorf("removing the pod sandbox %q: %w", id, errors.New("ID cannot be empty"))
	}

	if err := rc.RemovePodSandbox(c.ctx, id); err != nil {
		return fmt.Errorf("removing the pod sandbox %q: %w", id, err)
	}

	fmt.Fprintf(c.out, "Removed sandbox %s\n", id)

	return nil
}

// listOptions are crictl's filters for pods and ps.
type listOptions struct {
	id, podID, nameRegexp, namespaceRegexp, state, image, output string
	labels                                                       map[string]string
	verbose, quiet, all, latest, noTrunc, resolveImagePath       bool
	last                                                         int64
}

func (c *cmdContext) listOptions() (*listOptions, error) {
	labels, err := parseLabelStringSlice(c.StringSlice("label"))
	if err != nil {
		return nil, err
	}

	o := &listOptions{
		id: c.String("id"), nameRegexp: c.String("name"), namespaceRegexp: c.String("namespace"),
		state: c.String("state"), output: c.String("output"), labels: labels,
		verbose: c.Bool("verbose"), quiet: c.Bool("quiet"), latest: c.Bool("latest"),
		noTrunc: c.Bool("no-trunc"), last: c.Int("last"),
	}

	if c.cmd.name == "ps" {
		o.podID, o.image, o.all, o.resolveImagePath = c.String("pod"), c.String("image"), c.Bool("all"), c.Bool("resolve-image-path")
	}

	return o, nil
}

func listPods(c *cmdContext) error {
	rc, err := c.runtimeService(0)
	if err != nil {
		return err
	}

	opts, err := c.listOptions()
	if err != nil {
		return err
	}

	if err := c.outputPods(rc, opts); err != nil {
		return fmt.Errorf("listing pod sandboxes: %w", err)
	}

	return nil
}

func (c *cmdContext) listPodSandboxes(rc *runtimeClient, opts *listOptions) ([]*pb.PodSandbox, error) {
	filter := &pb.PodSandboxFilter{Id: opts.id}

	if opts.state != "" {
		switch strings.ToLower(opts.state) {
		case "ready":
			filter.State = &pb.PodSandboxStateValue{State: pb.PodSandboxState_SANDBOX_READY}
		case "notready":
			filter.State = &pb.PodSandboxStateValue{State: pb.PodSandboxState_SANDBOX_NOTREADY}
		default:
			return nil, c.logFatalf("--state should be ready or notready")
		}
	}

	if opts.labels != nil {
		filter.LabelSelector = opts.labels
	}

	pods, err := rc.ListPodSandbox(c.ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("call list sandboxes RPC: %w", err)
	}

	filtered := []*pb.PodSandbox{}

	for _, p := range pods {
		if p.GetMetadata() != nil && matchesRegex(opts.nameRegexp, p.GetMetadata().GetName()) &&
			matchesRegex(opts.namespaceRegexp, p.GetMetadata().GetNamespace()) {
			filtered = append(filtered, p)
		}
	}

	sort.SliceStable(filtered, func(i, j int) bool { return filtered[i].GetCreatedAt() > filtered[j].GetCreatedAt() })

	return filtered[:limit(len(filtered), opts)], nil
}

// limit applies --latest / --last.
func limit(n int, opts *listOptions) int {
	want := n
	if opts.latest {
		want = 1
	}

	if opts.last > 0 {
		want = int(opts.last)
	}

	return min(want, n)
}

func (c *cmdContext) outputPods(rc *runtimeClient, opts *listOptions) error {
	pods, err := c.listPodSandboxes(rc, opts)
	if err != nil {
		var exit *exitError
		if errors.As(err, &exit) {
			return err
		}

		return fmt.Errorf("list pod sandboxes: %w", err)
	}

	switch opts.output {
	case "json":
		return c.outputProtoJSON(&pb.ListPodSandboxResponse{Items: pods})
	case "yaml":
		return c.outputProtoYAML(&pb.ListPodSandboxResponse{Items: pods})
	case "table":
	default:
		return fmt.Errorf("unsupported output format %q", opts.output)
	}

	w := newTable(c.out)
	if !opts.verbose && !opts.quiet {
		addRow(w, "POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME")
	}

	for _, p := range pods {
		md := p.GetMetadata()

		switch {
		case opts.quiet:
			fmt.Fprintf(c.out, "%s\n", p.GetId())
		case !opts.verbose:
			id := p.GetId()
			if !opts.noTrunc {
				id = truncateID(id, "")
			}

			addRow(w, id, ago(p.GetCreatedAt()), podState(p.GetState()), md.GetName(), md.GetNamespace(),
				strconv.FormatUint(uint64(md.GetAttempt()), 10), runtimeHandler(p))
		default:
			fmt.Fprintf(c.out, "ID: %s\n", p.GetId())

			if md != nil {
				printIf(c.out, "Name: %s\n", md.GetName())
				printIf(c.out, "UID: %s\n", md.GetUid())
				printIf(c.out, "Namespace: %s\n", md.GetNamespace())

				if md.GetAttempt() != 0 {
					fmt.Fprintf(c.out, "Attempt: %v\n", md.GetAttempt())
				}
			}

			fmt.Fprintf(c.out, "Status: %s\n", podState(p.GetState()))
			fmt.Fprintf(c.out, "Created: %v\n", time.Unix(0, p.GetCreatedAt()))
			printMap(c.out, "Labels", p.Labels)
			printMap(c.out, "Annotations", p.Annotations)
			fmt.Fprintf(c.out, "Runtime: %s\n\n", runtimeHandler(p))
		}
	}

	return w.Flush()
}

func podState(s pb.PodSandboxState) string {
	switch s {
	case pb.PodSandboxState_SANDBOX_READY:
		return "Ready"
	case pb.PodSandboxState_SANDBOX_NOTREADY:
		return "NotReady"
	}

	return s.String() // crictl exits here ("Unknown pod state")
}

func runtimeHandler(p *pb.PodSandbox) string {
	if p.GetRuntimeHandler() == "" {
		return "(default)"
	}

	return p.GetRuntimeHandler()
}

// --- containers ---

func createContainer(c *cmdContext) error {
	if c.NArg() != 3 {
		return c.showHelp()
	}

	if c.Bool("no-pull") && c.Bool("with-pull") {
		return errors.New("conflict: no-pull and with-pull are both set")
	}

	withPull := (!c.Bool("no-pull") && c.pullImageOnCreate) || c.Bool("with-pull")

	var (
		ic  *imageClient
		err error
	)

	if withPull {
		if ic, err = c.imageService(); err != nil {
			return err
		}
	}

	rc, err := c.runtimeService(c.Duration("cancel-timeout"))
	if err != nil {
		return err
	}

	id, err := c.create(rc, ic, c.Args()[0], c.Args()[1], c.Args()[2], withPull)
	if err != nil {
		return fmt.Errorf("creating container: %w", err)
	}

	fmt.Fprintln(c.out, id)

	return nil
}

func (c *cmdContext) create(rc *runtimeClient, ic *imageClient, podID, configPath, podConfigPath string, withPull bool) (string, error) {
	cfg, err := loadContainerConfig(configPath)
	if err != nil {
		return "", err
	}

	var podCfg *pb.PodSandboxConfig
	if podConfigPath != "" {
		if podCfg, err = c.loadPodSandboxConfig(podConfigPath); err != nil {
			return "", err
		}
	}

	image := cfg.GetImage().GetImage()
	if cfg.GetImage().GetUserSpecifiedImage() == "" {
		cfg.Image.UserSpecifiedImage = image
	}

	if withPull {
		auth, err := getAuth(c.String("creds"), c.String("auth"), c.String("username"))
		if err != nil {
			return "", err
		}

		images := []string{image}

		c.log.Infof("Pulling container image: %s", image)

		for _, m := range cfg.GetMounts() {
			if m.GetImage().GetImage() != "" {
				c.log.Infof("Pulling image %s to be mounted to container path: %s", image, m.GetContainerPath())
				images = append(images, m.GetImage().GetImage())
			}
		}

		for _, img := range images {
			if _, err := c.pull(ic, img, auth, podCfg, cfg.GetImage().GetAnnotations(), c.Duration("pull-timeout")); err != nil {
				return "", err
			}
		}
	}

	return rc.CreateContainer(c.ctx, podID, cfg, podCfg)
}

func startContainers(c *cmdContext) error {
	if c.NArg() == 0 {
		return errors.New("ID cannot be empty")
	}

	rc, err := c.runtimeService(0)
	if err != nil {
		return err
	}

	for _, id := range c.Args() {
		if err := rc.StartContainer(c.ctx, id); err != nil {
			return fmt.Errorf("starting the container %q: %w", id, err)
		}

		fmt.Fprintln(c.out, id)
	}

	return nil
}

func stopContainers(c *cmdContext) error {
	rc, err := c.runtimeService(0)
	if err != nil {
		return err
	}

	if c.Bool("all") && c.NArg() > 0 {
		return &exitError{code: 1, msg: "cannot specify CONTAINER-ID(s) when using --all"}
	}

	ids := c.Args()

	if c.Bool("all") {
		ctrs, err := c.listContainerItems(rc, nil, &listOptions{state: "running"})
		if err != nil {
			return fmt.Errorf("listing containers: %w", err)
		}

		if len(ctrs) == 0 {
			fmt.Fprintln(c.out, "No running containers found.")

			return nil
		}

		ids = nil
		for _, ctr := range ctrs {
			ids = append(ids, ctr.GetId())
		}
	} else if len(ids) == 0 {
		return &exitError{code: 1, msg: "you must specify at least one CONTAINER-ID or use --all"}
	}

	for _, id := range ids {
		if err := c.stopContainer(rc, id, c.Int("timeout")); err != nil {
			return fmt.Errorf("stopping the container %q: %w", id, err)
		}
	}

	return nil
}

func (c *cmdContext) stopContainer(rc *runtimeClient, id string, grace int64) error {
	if id == "" {
		return errors.New("ID cannot be empty")
	}

	if err := rc.StopContainer(c.ctx, id, grace); err != nil {
		return err
	}

	fmt.Fprintln(c.out, id)

	return nil
}

func removeContainers(c *cmdContext) error {
	rc, err := c.runtimeService(0)
	if err != nil {
		return err
	}

	ids := c.Args()

	if c.Bool("all") {
		ctrs, err := rc.ListContainers(c.ctx, nil)
		if err != nil {
			return err
		}

		ids = nil
		for _, ctr := range ctrs {
			ids = append(ids, ctr.GetId())
		}
	}

	if len(ids) == 0 {
		if c.Bool("all") {
			c.log.Info("No containers to remove")

			return nil
		}

		return c.showHelp()
	}

	var errs []error

	for _, id := range ids {
		errs = append(errs, c.removeContainer(rc, id))
	}

	return errors.Join(errs...)
}

func (c *cmdContext) removeContainer(rc *runtimeClient, id string) error {
	resp, err := rc.ContainerStatus(c.ctx, id, false)
	if err != nil {
		return fmt.Errorf("getting container status %q: %w", id, err)
	}

	if resp.GetStatus().GetState() == pb.ContainerState_CONTAINER_RUNNING {
		if !c.Bool("force") {
			return fmt.Errorf("container %q is running, please stop it first", id)
		}

		if err := c.stopContainer(rc, id, 0); err != nil {
			return fmt.Errorf("stopping the container %q: %w", id, err)
		}
	}

	if id == "" {
		return fmt.Errorf("removing container %q: %w", id, errors.New("ID cannot be empty"))
	}

	if err := rc.RemoveContainer(c.ctx, id); err != nil {
		return fmt.Errorf("removing container %q: %w", id, err)
	}

	fmt.Fprintln(c.out, id)

	if logPath := resp.GetStatus().GetLogPath(); logPath != "" && !c.Bool("keep-logs") {
		rotations, _ := filepath.Glob(logPath + ".*")
		for _, f := range append(rotations, logPath) {
			if err := os.Remove(f); err != nil {
				c.log.Errorf("removing log file %s for container %q failed: %v", f, id, err)
			}
		}
	}

	return nil
}

func listContainers(c *cmdContext) error {
	if c.NArg() != 0 {
		return c.showHelp()
	}

	rc, err := c.runtimeService(0)
	if err != nil {
		return err
	}

	ic, err := c.imageService()
	if err != nil {
		return err
	}

	opts, err := c.listOptions()
	if err != nil {
		return err
	}

	if err := c.outputContainers(rc, ic, opts); err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}

	return nil
}

func (c *cmdContext) listContainerItems(rc *runtimeClient, ic *imageClient, opts *listOptions) ([]*pb.Container, error) {
	filter := &pb.ContainerFilter{Id: opts.id, PodSandboxId: opts.podID}

	if !opts.all && opts.state == "" {
		filter.State = &pb.ContainerStateValue{State: pb.ContainerState_CONTAINER_RUNNING}
	}

	if opts.state != "" {
		states := map[string]pb.ContainerState{
			"created": pb.ContainerState_CONTAINER_CREATED, "running": pb.ContainerState_CONTAINER_RUNNING,
			"exited": pb.ContainerState_CONTAINER_EXITED, "unknown": pb.ContainerState_CONTAINER_UNKNOWN,
		}

		st, ok := states[strings.ToLower(opts.state)]
		if !ok {
			return nil, c.logFatalf("--state should be one of created, running, exited or unknown")
		}

		filter.State = &pb.ContainerStateValue{State: st}
	}

	if opts.latest || opts.last > 0 {
		filter.State = nil
	}

	if opts.labels != nil {
		filter.LabelSelector = opts.labels
	}

	ctrs, err := rc.ListContainers(c.ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("call list containers RPC: %w", err)
	}

	filtered := []*pb.Container{}

	for _, ctr := range ctrs {
		match, err := c.matchesImage(ic, opts.image, ctr.GetImage().GetImage())
		if err != nil {
			return nil, fmt.Errorf("check image match: %w", err)
		}

		if match && ctr.GetMetadata() != nil && matchesRegex(opts.nameRegexp, ctr.GetMetadata().GetName()) &&
			matchesRegex(opts.namespaceRegexp, labelOrUnknown(ctr.GetLabels(), "io.kubernetes.pod.namespace")) {
			filtered = append(filtered, ctr)
		}
	}

	sort.SliceStable(filtered, func(i, j int) bool { return filtered[i].GetCreatedAt() > filtered[j].GetCreatedAt() })

	return filtered[:limit(len(filtered), opts)], nil
}

func (c *cmdContext) matchesImage(ic *imageClient, image, containerImage string) (bool, error) {
	if image == "" || ic == nil {
		return true, nil
	}

	r1, err := ic.ImageStatus(c.ctx, &pb.ImageSpec{Image: image}, false)
	if err != nil {
		return false, err
	}

	r2, err := ic.ImageStatus(c.ctx, &pb.ImageSpec{Image: containerImage}, false)
	if err != nil {
		return false, err
	}

	if r1.GetImage() == nil || r2.GetImage() == nil {
		return false, nil
	}

	return r1.GetImage().GetId() == r2.GetImage().GetId(), nil
}

func (c *cmdContext) outputContainers(rc *runtimeClient, ic *imageClient, opts *listOptions) error {
	ctrs, err := c.listContainerItems(rc, ic, opts)
	if err != nil {
		var exit *exitError
		if errors.As(err, &exit) {
			return err
		}

		return fmt.Errorf("list containers: %w", err)
	}

	switch opts.output {
	case "json":
		return c.outputProtoJSON(&pb.ListContainersResponse{Containers: ctrs})
	case "yaml":
		return c.outputProtoYAML(&pb.ListContainersResponse{Containers: ctrs})
	case "table":
	default:
		return fmt.Errorf("unsupported output format %q", opts.output)
	}

	w := newTable(c.out)
	if !opts.verbose && !opts.quiet {
		addRow(w, "CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD", "NAMESPACE")
	}

	for _, ctr := range ctrs {
		if opts.quiet {
			fmt.Fprintf(c.out, "%s\n", ctr.GetId())

			continue
		}

		namespace := labelOrUnknown(ctr.GetLabels(), "io.kubernetes.pod.namespace")

		if !opts.verbose {
			id, podID, image := ctr.GetId(), ctr.GetPodSandboxId(), ctr.GetImage().GetImage()

			if !opts.noTrunc {
				id, podID = truncateID(id, ""), truncateID(podID, "")
				if algo, ok := parseDigest(image); ok {
					image = truncateID(image, algo+":")
				}
			}

			if opts.resolveImagePath {
				orig, err := c.repoImage(ic, image)
				if err != nil {
					return fmt.Errorf("failed to fetch repo image %w", err)
				}

				image = orig
			}

			addRow(w, id, image, ago(ctr.GetCreatedAt()), containerState(ctr.GetState()), ctr.GetMetadata().GetName(),
				strconv.FormatUint(uint64(ctr.GetMetadata().GetAttempt()), 10), podID,
				labelOrUnknown(ctr.GetLabels(), "io.kubernetes.pod.name"), namespace)

			continue
		}

		fmt.Fprintf(c.out, "ID: %s\nPodID: %s\nNamespace: %s\n", ctr.GetId(), ctr.GetPodSandboxId(), namespace)

		if md := ctr.GetMetadata(); md != nil {
			printIf(c.out, "Name: %s\n", md.GetName())
			fmt.Fprintf(c.out, "Attempt: %v\n", md.GetAttempt())
		}

		fmt.Fprintf(c.out, "State: %s\n", containerState(ctr.GetState()))

		if ctr.GetImage() != nil {
			fmt.Fprintf(c.out, "Image: %s\n", ctr.GetImage().GetImage())
		}

		fmt.Fprintf(c.out, "Created: %v\n", ago(ctr.GetCreatedAt()))
		printMap(c.out, "Labels", ctr.Labels)
		printMap(c.out, "Annotations", ctr.Annotations)
		fmt.Fprintln(c.out)
	}

	return w.Flush()
}

func (c *cmdContext) repoImage(ic *imageClient, image string) (string, error) {
	r, err := ic.ImageStatus(c.ctx, &pb.ImageSpec{Image: image}, false)
	if err != nil {
		return "", err
	}

	if tags := r.GetImage().GetRepoTags(); len(tags) > 0 {
		return tags[0], nil
	}

	return image, nil
}

func containerState(s pb.ContainerState) string {
	switch s {
	case pb.ContainerState_CONTAINER_CREATED:
		return "Created"
	case pb.ContainerState_CONTAINER_RUNNING:
		return "Running"
	case pb.ContainerState_CONTAINER_EXITED:
		return "Exited"
	case pb.ContainerState_CONTAINER_UNKNOWN:
		return "Unknown"
	}

	return s.String() // crictl exits here ("Unknown container state")
}

func labelOrUnknown(labels map[string]string, key string) string {
	if v, ok := labels[key]; ok {
		return v
	}

	return "unknown"
}

// --- images ---

func pullImage(c *cmdContext) error {
	name := ""
	if c.NArg() > 0 {
		name = c.Args()[0]
	}

	if name == "" {
		return errors.New("image name cannot be empty")
	}

	if c.NArg() > 1 {
		return c.showHelp()
	}

	ic, err := c.imageService()
	if err != nil {
		return err
	}

	auth, err := getAuth(c.String("creds"), c.String("auth"), c.String("username"))
	if err != nil {
		return err
	}

	var podCfg *pb.PodSandboxConfig
	if c.IsSet("pod-config") {
		if podCfg, err = c.loadPodSandboxConfig(c.String("pod-config")); err != nil {
			return fmt.Errorf("load podSandboxConfig: %w", err)
		}
	}

	var ann map[string]string
	if c.IsSet("annotation") {
		if ann, err = parseLabelStringSlice(c.StringSlice("annotation")); err != nil {
			return err
		}
	}

	ref, err := c.pull(ic, name, auth, podCfg, ann, c.Duration("pull-timeout"))
	if err != nil {
		return fmt.Errorf("pulling image: %w", err)
	}

	fmt.Fprintf(c.out, "Image is up to date for %s\n", ref)

	return nil
}

// pull is crictl's PullImageWithSandbox.
func (c *cmdContext) pull(ic *imageClient, image string, auth *pb.AuthConfig, podCfg *pb.PodSandboxConfig,
	ann map[string]string, timeout time.Duration,
) (string, error) {
	if timeout < 0 {
		return "", errors.New("timeout should be bigger than 0")
	}

	ctx := c.ctx

	if timeout > 0 {
		var cancel context.CancelFunc

		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}

	return ic.PullImage(ctx, &pb.ImageSpec{Image: image, Annotations: ann}, auth, podCfg)
}

func getAuth(creds, auth, username string) (*pb.AuthConfig, error) {
	if username != "" {
		return nil, errors.New("--username (interactive password prompt) is not supported by crictl-lite, use --creds")
	}

	if creds != "" && auth != "" {
		return nil, errors.New("both `--creds` and `--auth` are specified")
	}

	if creds != "" {
		user, pass, found := strings.Cut(creds, ":")
		if found && user == "" {
			return nil, errors.New("username can't be empty")
		}

		return &pb.AuthConfig{Username: user, Password: pass}, nil
	}

	if auth != "" {
		return &pb.AuthConfig{Auth: auth}, nil
	}

	return nil, nil //nolint:nilnil // no credentials
}

func (c *cmdContext) listImageItems(ic *imageClient, name string, filters []string) (*pb.ListImagesResponse, error) {
	images, err := ic.ListImages(c.ctx, &pb.ImageFilter{Image: &pb.ImageSpec{Image: name}})
	if err != nil {
		return nil, err
	}

	sort.Sort(imageByRef(images))

	if len(filters) > 0 && len(images) > 0 {
		return nil, fmt.Errorf("filter images: --filter %q is not supported by crictl-lite", filters)
	}

	return &pb.ListImagesResponse{Images: images}, nil
}

type imageByRef []*pb.Image

func (a imageByRef) Len() int      { return len(a) }
func (a imageByRef) Swap(i, j int) { a[i], a[j] = a[j], a[i] }
func (a imageByRef) Less(i, j int) bool {
	if len(a[i].GetRepoTags()) > 0 && len(a[j].GetRepoTags()) > 0 {
		return a[i].GetRepoTags()[0] < a[j].GetRepoTags()[0]
	}

	if len(a[i].GetRepoDigests()) > 0 && len(a[j].GetRepoDigests()) > 0 {
		return a[i].GetRepoDigests()[0] < a[j].GetRepoDigests()[0]
	}

	return a[i].GetId() < a[j].GetId()
}

func listImages(c *cmdContext) error {
	if c.NArg() > 1 {
		return c.showHelp()
	}

	ic, err := c.imageService()
	if err != nil {
		return err
	}

	name := ""
	if c.NArg() == 1 {
		name = c.Args()[0]
	}

	r, err := c.listImageItems(ic, name, c.StringSlice("filter"))
	if err != nil {
		return fmt.Errorf("listing images: %w", err)
	}

	switch c.String("output") {
	case "json":
		return c.outputProtoJSON(r)
	case "yaml":
		return c.outputProtoYAML(r)
	}

	verbose, quiet, digests, pinned := c.Bool("verbose"), c.Bool("quiet"), c.Bool("digests"), c.Bool("pinned")

	w := newTable(c.out)

	if !verbose && !quiet {
		row := []string{"IMAGE", "TAG"}
		if digests {
			row = append(row, "DIGEST")
		}

		row = append(row, "IMAGE ID", "SIZE")
		if pinned {
			row = append(row, "PINNED")
		}

		addRow(w, row...)
	}

	for _, img := range r.GetImages() {
		if quiet {
			fmt.Fprintf(c.out, "%s\n", img.GetId())

			continue
		}

		if !verbose {
			imageName, repoDigest := normalizeRepoDigest(img.GetRepoDigests())
			size := humanSize(float64(img.GetSize()))

			id := img.GetId()
			if !c.Bool("no-trunc") {
				id, repoDigest = truncateID(id, "sha256:"), truncateID(repoDigest, "sha256:")
			}

			for _, pair := range normalizeRepoTagPair(img.GetRepoTags(), imageName) {
				row := []string{pair[0], pair[1]}
				if digests {
					row = append(row, repoDigest)
				}

				row = append(row, id, size)
				if pinned {
					row = append(row, strconv.FormatBool(img.GetPinned()))
				}

				addRow(w, row...)
			}

			continue
		}

		fmt.Fprintf(c.out, "ID: %s\n", img.GetId())

		for _, tag := range img.GetRepoTags() {
			fmt.Fprintf(c.out, "RepoTags: %s\n", tag)
		}

		for _, d := range img.GetRepoDigests() {
			fmt.Fprintf(c.out, "RepoDigests: %s\n", d)
		}

		if img.GetSize() != 0 {
			fmt.Fprintf(c.out, "Size: %d\n", img.GetSize())
		}

		if img.GetUid() != nil {
			fmt.Fprintf(c.out, "Uid: %v\n", img.GetUid())
		}

		printIf(c.out, "Username: %v\n", img.GetUsername())

		if img.GetPinned() {
			fmt.Fprintf(c.out, "Pinned: %v\n", img.GetPinned())
		}

		fmt.Fprintf(c.out, "\n")
	}

	return w.Flush()
}

func normalizeRepoTagPair(repoTags []string, imageName string) [][]string {
	if len(repoTags) == 0 {
		return [][]string{{imageName, "<none>"}}
	}

	pairs := make([][]string, 0, len(repoTags))

	for _, tag := range repoTags {
		i := strings.LastIndex(tag, ":")
		if i == -1 {
			pairs = append(pairs, []string{"errorRepoTag", "errorRepoTag"})

			continue
		}

		name := tag[:i]
		if name == "<none>" {
			name = imageName
		}

		pairs = append(pairs, []string{name, tag[i+1:]})
	}

	return pairs
}

func normalizeRepoDigest(repoDigests []string) (repo, digest string) {
	if len(repoDigests) == 0 {
		return "<none>", "<none>"
	}

	parts := strings.Split(repoDigests[0], "@")
	if len(parts) != 2 {
		return "errorName", "errorRepoDigest"
	}

	return parts[0], parts[1]
}

func inspectImages(c *cmdContext) error {
	ic, err := c.imageService()
	if err != nil {
		return err
	}

	verbose := !c.Bool("quiet")

	output := c.String("output")
	if output == "" {
		output = "json"
	}

	ids := c.Args()

	if len(ids) == 0 {
		r, err := c.listImageItems(ic, c.String("name"), c.StringSlice("filter"))
		if err != nil {
			return fmt.Errorf("listing images: %w", err)
		}

		for _, img := range r.GetImages() {
			ids = append(ids, img.GetId())
		}
	}

	if len(ids) == 0 {
		c.log.Error("No IDs provided or nothing found per filter")

		return c.showHelp()
	}

	statuses := []statusData{}

	for _, id := range ids {
		r, err := ic.ImageStatus(c.ctx, &pb.ImageSpec{Image: id}, verbose)
		if err != nil {
			return fmt.Errorf("image status for %q request: %w", id, err)
		}

		if r.GetImage() == nil {
			return fmt.Errorf("no such image %q present", id)
		}

		statusJSON, err := protobufObjectToJSON(r.GetImage())
		if err != nil {
			return fmt.Errorf("marshal status to JSON for %q: %w", id, err)
		}

		if output == "table" {
			fmt.Fprintf(c.out, "ID: %s\n", r.GetImage().GetId())

			for _, tag := range r.GetImage().GetRepoTags() {
				fmt.Fprintf(c.out, "Tag: %s\n", tag)
			}

			for _, d := range r.GetImage().GetRepoDigests() {
				fmt.Fprintf(c.out, "Digest: %s\n", d)
			}

			fmt.Fprintf(c.out, "Size: %s\n", humanSize(float64(r.GetImage().GetSize())))

			if verbose {
				fmt.Fprintf(c.out, "Info: %v\n", r.GetInfo())
			}
		} else {
			statuses = append(statuses, statusData{json: statusJSON, info: r.GetInfo()})
		}
	}

	return c.outputStatusData(statuses, output)
}

func removeImages(c *cmdContext) error {
	ic, err := c.imageService()
	if err != nil {
		return err
	}

	ids := map[string]bool{}
	for _, id := range c.Args() {
		ids[id] = true
	}

	all, prune := c.Bool("all"), c.Bool("prune")

	if all || prune {
		images, err := ic.ListImages(c.ctx, nil)
		if err != nil {
			return err
		}

		for _, img := range images {
			if prune && img.GetPinned() {
				continue
			}

			ids[img.GetId()] = true
		}
	}

	if prune {
		rc, err := c.runtimeService(0)
		if err != nil {
			return err
		}

		ctrs, err := rc.ListContainers(c.ctx, nil)
		if err != nil {
			return err
		}

		for _, ctr := range ctrs {
			img := ctr.GetImage().GetImage()

			st, err := ic.ImageStatus(c.ctx, &pb.ImageSpec{Image: img}, false)
			if err != nil {
				c.log.Errorf("image status request for %q failed: %v", img, err)

				continue
			}

			ids[st.GetImage().GetId()] = false
		}
	}

	if len(ids) == 0 {
		if all || prune {
			c.log.Info("No images to remove")

			return nil
		}

		return c.showHelp()
	}

	// crictl removes the images concurrently in map order; crictl-lite does it sorted.
	var errs []error

	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id, remove := range ids {
			if remove && !yield(id) {
				return
			}
		}
	}) {
		errs = append(errs, c.removeImage(ic, id, prune))
	}

	return errors.Join(errs...)
}

func (c *cmdContext) removeImage(ic *imageClient, id string, prune bool) error {
	st, err := ic.ImageStatus(c.ctx, &pb.ImageSpec{Image: id}, false)
	if err != nil {
		return fmt.Errorf("image status request for %q failed: %w", id, err)
	}

	if st.GetImage() == nil {
		return fmt.Errorf("no such image %s", id)
	}

	tags := st.GetImage().GetRepoTags()
	if len(tags) > 1 && !strings.HasPrefix(id, "sha256:") && (strings.Contains(id, ":") || strings.Contains(id, "/")) {
		c.log.Warnf("Image %q has multiple tags. Removing this image will delete all of the following tags:", id)

		for _, tag := range tags {
			c.log.Warnf("  %s", tag)
		}
	}

	if err := ic.RemoveImage(c.ctx, &pb.ImageSpec{Image: id}); err != nil {
		if prune {
			return nil
		}

		return fmt.Errorf("error of removing image %q: %w", id, err)
	}

	deleted := tags
	if len(deleted) == 0 {
		deleted = st.GetImage().GetRepoDigests()
	}

	for _, ref := range deleted {
		fmt.Fprintf(c.out, "Deleted: %s\n", ref)
	}

	return nil
}

// --- runtime ---

func runtimeInfo(c *cmdContext) error {
	if c.NArg() != 0 {
		return c.showHelp()
	}

	rc, err := c.runtimeService(0)
	if err != nil {
		return err
	}

	if err := c.info(rc); err != nil {
		return fmt.Errorf("getting status of runtime: %w", err)
	}

	return nil
}

func (c *cmdContext) info(rc *runtimeClient) error {
	r, err := rc.Status(c.ctx, !c.Bool("quiet"))
	if err != nil {
		return err
	}

	statusJSON, err := protobufObjectToJSON(r.GetStatus())
	if err != nil {
		return fmt.Errorf("create status JSON: %w", err)
	}

	// encoding/json on purpose: crictl prints these with the Go field tags.
	handlers, err := json.Marshal(r.GetRuntimeHandlers())
	if err != nil {
		return err
	}

	features, err := json.Marshal(r.GetFeatures())
	if err != nil {
		return err
	}

	return c.outputStatusData([]statusData{{
		json: statusJSON, runtimeHandlers: string(handlers), features: string(features), info: r.GetInfo(),
	}}, c.String("output"))
}

func runtimeVersion(c *cmdContext) error {
	if c.NArg() != 0 {
		return c.showHelp()
	}

	rc, err := c.runtimeService(0)
	if err != nil {
		return err
	}

	r, err := rc.Version(c.ctx, "v1")
	if err != nil {
		return fmt.Errorf("getting the runtime version: %w", err)
	}

	fmt.Fprintln(c.out, "Version: ", r.GetVersion())
	fmt.Fprintln(c.out, "RuntimeName: ", r.GetRuntimeName())
	fmt.Fprintln(c.out, "RuntimeVersion: ", r.GetRuntimeVersion())
	fmt.Fprintln(c.out, "RuntimeApiVersion: ", r.GetRuntimeApiVersion())

	return nil
}

// --- config files ---

// loadPodSandboxConfig reads a pod config as crictl does: YAML or JSON through sigs.k8s.io/yaml
// into the Go struct (so field names are the snake_case json tags, matched case-insensitively,
// and enums are numbers). A missing uid is generated.
func (c *cmdContext) loadPodSandboxConfig(path string) (*pb.PodSandboxConfig, error) {
	var cfg pb.PodSandboxConfig
	if err := readConfig(path, &cfg); err != nil {
		return nil, err
	}

	if cfg.GetMetadata() == nil {
		return nil, errors.New("metadata is not set")
	}

	if cfg.GetMetadata().GetUid() == "" {
		cfg.Metadata.Uid = newUUID()
	}

	if cfg.GetMetadata().GetName() == "" || cfg.GetMetadata().GetNamespace() == "" {
		return nil, fmt.Errorf("name or namespace is not in metadata %q", cfg.GetMetadata())
	}

	if cfg.GetLinux() != nil && cfg.GetLinux().GetCgroupParent() == "" {
		c.log.Warn("cgroup_parent is not set. Use `runtime-config` to get the runtime cgroup driver")
	}

	return &cfg, nil
}

func loadContainerConfig(path string) (*pb.ContainerConfig, error) {
	var cfg pb.ContainerConfig
	if err := readConfig(path, &cfg); err != nil {
		return nil, err
	}

	switch {
	case cfg.GetMetadata() == nil:
		return nil, errors.New("metadata is not set")
	case cfg.GetMetadata().GetName() == "":
		return nil, fmt.Errorf("name is not in metadata %q", cfg.GetMetadata())
	case cfg.GetImage() == nil:
		return nil, errors.New("image is not set")
	case cfg.GetImage().GetImage() == "":
		return nil, fmt.Errorf("image field is not set in image %q", cfg.GetImage())
	}

	return &cfg, nil
}

func readConfig(path string, into proto.Message) error {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("config at %s not found", path)
		}

		return err
	}

	return yaml.Unmarshal(data, into)
}

// newUUID returns a random (version 4) UUID, like github.com/google/uuid.New.
func newUUID() string {
	var b [16]byte

	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80

	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// --- output helpers (cmd/crictl/util.go, display.go) ---

func protobufObjectToJSON(m proto.Message) (string, error) {
	out, err := protojson.MarshalOptions{EmitDefaultValues: true, Indent: "  "}.Marshal(m)

	return string(out), err
}

func (c *cmdContext) outputProtoJSON(m proto.Message) error {
	s, err := protobufObjectToJSON(m)
	if err != nil {
		return err
	}

	fmt.Fprintln(c.out, s)

	return nil
}

func (c *cmdContext) outputProtoYAML(m proto.Message) error {
	s, err := protobufObjectToJSON(m)
	if err != nil {
		return err
	}

	y, err := yaml.JSONToYAML([]byte(s))
	if err != nil {
		return err
	}

	fmt.Fprintln(c.out, string(y))

	return nil
}

type statusData struct {
	json            string
	runtimeHandlers string
	features        string
	info            map[string]string
}

// outputStatusData prints {"status": ..., "info keys": ...} documents (an array if several).
// Info values that start with "{" are embedded as JSON objects, others as unquoted strings.
func (c *cmdContext) outputStatusData(statuses []statusData, format string) error {
	if len(statuses) == 0 {
		return nil
	}

	result := []map[string]any{}

	for _, st := range statuses {
		m := map[string]any{}

		if st.json != "" {
			var v map[string]any
			if err := json.Unmarshal([]byte(st.json), &v); err != nil {
				return fmt.Errorf("unmarshal status JSON: %w", err)
			}

			m["status"] = v
		}

		if st.runtimeHandlers != "" {
			var v []*any
			if err := json.Unmarshal([]byte(st.runtimeHandlers), &v); err != nil {
				return fmt.Errorf("unmarshal runtime handlers: %w", err)
			}

			if v != nil {
				m["runtimeHandlers"] = v
			}
		}

		if st.features != "" {
			v := map[string]any{}
			if err := json.Unmarshal([]byte(st.features), &v); err != nil {
				return fmt.Errorf("unmarshal features JSON: %w", err)
			}

			if v != nil {
				m["features"] = v
			}
		}

		for k, val := range st.info {
			if strings.HasPrefix(val, "{") {
				var v map[string]any
				if err := json.Unmarshal([]byte(val), &v); err != nil {
					return fmt.Errorf("unmarshal status info JSON: %w", err)
				}

				m[k] = v
			} else {
				m[k] = strings.Trim(val, `"`)
			}
		}

		result = append(result, m)
	}

	var (
		doc []byte
		err error
	)

	if len(result) == 1 {
		doc, err = json.Marshal(result[0])
	} else {
		doc, err = json.Marshal(result)
	}

	if err != nil {
		return fmt.Errorf("marshal result: %w", err)
	}

	switch format {
	case "yaml":
		y, err := yaml.JSONToYAML(doc)
		if err != nil {
			return fmt.Errorf("JSON result to YAML: %w", err)
		}

		fmt.Fprintln(c.out, string(y))
	case "json":
		var buf bytes.Buffer
		if err := json.Indent(&buf, doc, "", "  "); err != nil {
			return fmt.Errorf("indent JSON result: %w", err)
		}

		fmt.Fprintln(c.out, buf.String())
	case "go-template":
		return errors.New("execute template: go-template output is not supported by crictl-lite")
	default:
		return fmt.Errorf("unsupported format: %q", format)
	}

	return nil
}

func newTable(out io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(out, 20, 1, 3, ' ', 0) }

func addRow(w io.Writer, cols ...string) { fmt.Fprintln(w, strings.Join(cols, "\t")) }

func printIf(out io.Writer, format, value string) {
	if value != "" {
		fmt.Fprintf(out, format, value)
	}
}

func printMap(out io.Writer, title string, m map[string]string) {
	if m == nil {
		return
	}

	fmt.Fprintf(out, "%s:\n", title)

	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(out, "\t%s -> %s\n", k, m[k])
	}
}

func parseLabelStringSlice(ss []string) (map[string]string, error) {
	labels := map[string]string{}

	for _, s := range ss {
		pair := strings.Split(s, "=")
		if len(pair) != 2 {
			return nil, fmt.Errorf("incorrectly specified label: %v", s)
		}

		labels[pair[0]] = pair[1]
	}

	return labels, nil
}

func matchesRegex(pattern, target string) bool {
	if pattern == "" {
		return true
	}

	matched, err := regexp.MatchString(pattern, target)

	return err == nil && matched
}

func truncateID(id, prefix string) string {
	id = strings.TrimPrefix(id, prefix)
	if len(id) > 13 {
		id = id[:13]
	}

	return id
}

var digestHex = map[string]*regexp.Regexp{
	"sha256": regexp.MustCompile(`^[a-f0-9]{64}$`),
	"sha384": regexp.MustCompile(`^[a-f0-9]{96}$`),
	"sha512": regexp.MustCompile(`^[a-f0-9]{128}$`),
}

// parseDigest reports whether s is a valid "algorithm:hex" digest (go-digest's Parse).
func parseDigest(s string) (algo string, ok bool) {
	algo, enc, found := strings.Cut(s, ":")
	re := digestHex[algo]

	return algo, found && re != nil && re.MatchString(enc)
}

// ago formats a creation time like crictl: docker/go-units' HumanDuration + " ago".
func ago(createdAt int64) string {
	d := time.Now().UTC().Sub(time.Unix(0, createdAt))

	var s string

	switch seconds, minutes, hours := int(d.Seconds()), int(d.Minutes()), int(d.Hours()+0.5); {
	case seconds < 1:
		s = "Less than a second"
	case seconds == 1:
		s = "1 second"
	case seconds < 60:
		s = fmt.Sprintf("%d seconds", seconds)
	case minutes == 1:
		s = "About a minute"
	case minutes < 60:
		s = fmt.Sprintf("%d minutes", minutes)
	case hours == 1:
		s = "About an hour"
	case hours < 48:
		s = fmt.Sprintf("%d hours", hours)
	case hours < 24*7*2:
		s = fmt.Sprintf("%d days", hours/24)
	case hours < 24*30*2:
		s = fmt.Sprintf("%d weeks", hours/24/7)
	case hours < 24*365*2:
		s = fmt.Sprintf("%d months", hours/24/30)
	default:
		s = fmt.Sprintf("%d years", int(d.Hours())/24/365)
	}

	return s + " ago"
}

// humanSize is docker/go-units' HumanSizeWithPrecision(size, 3).
func humanSize(size float64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"}

	i := 0
	for size >= 1000 && i < len(units)-1 {
		size /= 1000
		i++
	}

	return fmt.Sprintf("%.*g%s", 3, size, units[i])
}

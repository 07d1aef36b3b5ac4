// Command crictl-lite is a small CRI client that accepts the crictl command lines the
// end-to-end tests use and prints what crictl v1.36.0 prints for them. The tests run it
// when no real crictl is available (env CRICTL unset).
//
// What is mirrored from crictl (cmd/crictl and k8s.io/cri-client in cri-tools v1.36.0):
//   - global flags before the subcommand, command flags after it, parsed with the stdlib
//     flag package exactly like urfave/cli v2 does (including "-qa" short-option splitting);
//   - /etc/crictl.yaml (or --config / CRI_CONFIG_FILE) and its precedence rules;
//   - the connection (unix sockets only, 16 MiB messages, a Version or ImageFsInfo call to
//     validate it) and the per-call timeouts of cri-client;
//   - output: tables, protojson for "-o json" lists, crictl's {"status", "info"} documents;
//   - errors: logrus' `level=fatal msg="<wrapped error>"` line and exit status 1, preceded by
//     cri-client's klog error line where cri-client logs one.
//
// The subcommands are in commands.go.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	yaml3 "sigs.k8s.io/yaml/goyaml.v3"
)

const (
	appName           = "crictl"
	appVersion        = "v1.36.0-lite"
	defaultTimeout    = 2 * time.Second
	defaultConfigPath = "/etc/crictl.yaml"
	maxMsgSize        = 16 << 20 // cri-client's receive limit
)

var defaultRuntimeEndpoints = []string{
	"unix:///run/containerd/containerd.sock", "unix:///run/crio/crio.sock", "unix:///var/run/cri-dockerd.sock",
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := newApp(ctx, os.Stdout, os.Stderr).run(os.Args[1:])

	stop()
	os.Exit(code)
}

// app holds the output streams and the settings crictl keeps in package variables.
type app struct {
	ctx     context.Context
	out     io.Writer
	errOut  io.Writer
	log     *logrus.Logger
	exePath string // for the crictl.yaml fallback next to the binary

	runtimeEndpoint      string
	runtimeEndpointIsSet bool
	imageEndpoint        string
	imageEndpointIsSet   bool
	timeout              time.Duration
	pullImageOnCreate    bool
	disablePullOnRun     bool
}

func newApp(ctx context.Context, out, errOut io.Writer) *app {
	log := logrus.New()
	log.Out = errOut

	exe, _ := os.Executable()

	return &app{ctx: ctx, out: out, errOut: errOut, log: log, exePath: exe}
}

// exitError ends the program with code; msg (if any) is printed to stderr as is (cli.Exit).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// errHelpShown: the help text was printed instead of running the command (exit status 0).
var errHelpShown = errors.New("help shown")

var globalFlags = []flagSpec{
	{kind: stringFlag, name: "config", aliases: []string{"c"}, value: defaultConfigPath, env: []string{"CRI_CONFIG_FILE"},
		usage: "Location of the client config file. If not specified and the default does not exist, the program's directory is searched as well"},
	{kind: stringFlag, name: "runtime-endpoint", aliases: []string{"r"}, env: []string{"CONTAINER_RUNTIME_ENDPOINT"},
		usage: "Endpoint of CRI container runtime service"},
	{kind: stringFlag, name: "image-endpoint", aliases: []string{"i"}, env: []string{"IMAGE_SERVICE_ENDPOINT"},
		usage: "Endpoint of CRI image manager service (default: uses 'runtime-endpoint' setting)"},
	{kind: durationFlag, name: "timeout", aliases: []string{"t"}, value: defaultTimeout.String(),
		usage: "Timeout of connecting to the server in seconds (e.g. 2s, 20s.). 0 or less is set to default"},
	{kind: boolFlag, name: "debug", aliases: []string{"D"}, usage: "Enable debug mode"},
	// Accepted for command-line compatibility, ignored.
	{kind: boolFlag, name: "enable-tracing", usage: "Ignored by crictl-lite"},
	{kind: intFlag, name: "tracing-sampling-rate-per-million", value: "-1", usage: "Ignored by crictl-lite"},
	{kind: stringFlag, name: "tracing-endpoint", value: "127.0.0.1:4317", usage: "Ignored by crictl-lite"},
	{kind: stringFlag, name: "profile-cpu", usage: "Ignored by crictl-lite"},
	{kind: stringFlag, name: "profile-mem", usage: "Ignored by crictl-lite"},
	{kind: boolFlag, name: "help", aliases: []string{"h"}, usage: "show help"},
	{kind: boolFlag, name: "version", aliases: []string{"v"}, usage: "print the version"},
}

// run executes one command line (without the program name) and returns the exit status.
func (a *app) run(args []string) int {
	g, err := newFlags(globalFlags, false)
	if err == nil {
		err = g.parse(args)
	}

	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.printAppHelp()

			return 0
		}

		fmt.Fprintf(a.out, "Incorrect Usage: %v\n\n", err)
		a.printAppHelp()

		return a.fail(err)
	}

	switch {
	case g.Bool("help"):
		a.printAppHelp()

		return 0
	case g.Bool("version"):
		fmt.Fprintf(a.out, "%s version %s\n", appName, appVersion)

		return 0
	}

	if err := a.configure(g); err != nil {
		return a.fail(err)
	}

	rest := g.Args()
	if len(rest) == 0 {
		a.printAppHelp()

		return 0
	}

	if rest[0] == "help" || rest[0] == "h" {
		if len(rest) > 1 {
			if cmd := lookupCommand(rest[1]); cmd != nil {
				a.printCommandHelp(cmd, cmd.allFlags())

				return 0
			}

			fmt.Fprintf(a.errOut, "No help topic for '%s'\n", rest[1])

			return 3
		}

		a.printAppHelp()

		return 0
	}

	cmd := lookupCommand(rest[0])
	if cmd == nil {
		fmt.Fprintf(a.errOut, "No help topic for '%s'\n", rest[0])

		return 3
	}

	return a.fail(a.runCommand(cmd, rest[1:]))
}

// fail reports err like crictl's logrus.Fatal (or cli.Exit) and returns the exit status.
func (a *app) fail(err error) int {
	var exit *exitError

	switch {
	case err == nil, errors.Is(err, errHelpShown):
		return 0
	case errors.As(err, &exit):
		if exit.msg != "" {
			fmt.Fprintln(a.errOut, exit.msg)
		}

		return exit.code
	}

	a.log.Log(logrus.FatalLevel, err)

	return 1
}

func (a *app) runCommand(cmd *command, args []string) error {
	f, err := newFlags(cmd.allFlags(), cmd.shortOpts)
	if err != nil {
		return err
	}

	err = f.parse(args)
	if errors.Is(err, flag.ErrHelp) || (err == nil && f.Bool("help")) {
		a.printCommandHelp(cmd, cmd.allFlags())

		return errHelpShown
	}

	if err != nil {
		fmt.Fprintf(a.out, "Incorrect Usage: %v\n\n", err)
		a.printCommandHelp(cmd, cmd.allFlags())

		return err
	}

	return cmd.action(&cmdContext{app: a, cmd: cmd, flags: f})
}

// configure is crictl's app.Before: it merges the config file with the global flags.
func (a *app) configure(g *flags) error {
	if g.Bool("debug") {
		a.log.SetLevel(logrus.DebugLevel)
	}

	cfg, err := a.serverConfigFromFile(g.String("config"))
	if err != nil && g.IsSet("config") {
		return err
	}

	a.runtimeEndpoint = g.String("runtime-endpoint")
	a.runtimeEndpointIsSet = g.IsSet("runtime-endpoint")
	a.imageEndpoint = g.String("image-endpoint")
	a.imageEndpointIsSet = g.IsSet("image-endpoint")
	a.timeout = g.Duration("timeout")

	if g.IsSet("timeout") && a.timeout <= 0 {
		a.timeout = defaultTimeout
	}

	if cfg == nil {
		return nil
	}

	// Command-line flags override the config file.
	if !a.runtimeEndpointIsSet && cfg.runtimeEndpoint != "" {
		a.runtimeEndpoint, a.runtimeEndpointIsSet = cfg.runtimeEndpoint, true
	}

	if !a.imageEndpointIsSet && cfg.imageEndpoint != "" {
		a.imageEndpoint, a.imageEndpointIsSet = cfg.imageEndpoint, true
	}

	if !g.IsSet("timeout") && cfg.timeout > 0 {
		a.timeout = cfg.timeout
	}

	if !g.IsSet("debug") && cfg.debug {
		a.log.SetLevel(logrus.DebugLevel)
	}

	a.pullImageOnCreate = cfg.pullImageOnCreate
	a.disablePullOnRun = cfg.disablePullOnRun

	return nil
}

// serverConfig is the content of crictl.yaml.
type serverConfig struct {
	runtimeEndpoint   string
	imageEndpoint     string
	timeout           time.Duration
	debug             bool
	pullImageOnCreate bool
	disablePullOnRun  bool
}

// serverConfigFromFile mirrors common.GetServerConfigFromFile: a missing file falls back to
// crictl.yaml next to the executable (with a warning).
func (a *app) serverConfigFromFile(path string) (*serverConfig, error) {
	if _, err := os.Stat(path); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("load config file: %w", err)
		}

		next := filepath.Join(filepath.Dir(a.exePath), "crictl.yaml")
		a.log.Warnf("Config %q does not exist, trying next: %q", path, next)

		if _, err := os.Stat(next); err != nil {
			return nil, fmt.Errorf("load config file: %w", err)
		}

		path = next
	}

	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config file: %w", err)
	}

	cfg, err := parseServerConfig(data)
	if err != nil {
		return nil, fmt.Errorf("load config file: %w", err)
	}

	return cfg, nil
}

// parseServerConfig mirrors common.ReadConfig: a flat YAML mapping of known keys, the
// timeout in whole seconds; unknown keys are an error.
func parseServerConfig(data []byte) (*serverConfig, error) {
	var root yaml3.Node
	if err := yaml3.Unmarshal(data, &root); err != nil {
		return nil, err
	}

	cfg := &serverConfig{}
	if len(root.Content) == 0 || root.Content[0].Content == nil {
		return cfg, nil
	}

	kv := root.Content[0].Content
	for i := 0; i < len(kv)-1; i += 2 {
		name, value := kv[i].Value, kv[i+1].Value

		var err error

		switch name {
		case "runtime-endpoint":
			cfg.runtimeEndpoint = value
		case "image-endpoint":
			cfg.imageEndpoint = value
		case "timeout":
			var secs int

			secs, err = strconv.Atoi(value)
			cfg.timeout = time.Duration(secs) * time.Second
		case "debug":
			cfg.debug, err = strconv.ParseBool(value)
		case "pull-image-on-create":
			cfg.pullImageOnCreate, err = strconv.ParseBool(value)
		case "disable-pull-on-run":
			cfg.disablePullOnRun, err = strconv.ParseBool(value)
		default:
			return nil, fmt.Errorf("Config option '%s' is not valid", name) //nolint:stylecheck // crictl's text
		}

		if err != nil {
			return nil, fmt.Errorf("parsing config option '%s': %w", name, err)
		}
	}

	return cfg, nil
}

// --- connections (k8s.io/cri-client) ---

// dialCRI connects to a CRI endpoint the way cri-client does. Only unix sockets are supported.
func dialCRI(endpoint string) (*grpc.ClientConn, error) {
	addr, err := socketPath(endpoint)
	if err != nil {
		return nil, err
	}

	params := grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: 5 * time.Second}
	params.Backoff.BaseDelay = 100 * time.Millisecond
	params.Backoff.MaxDelay = 3 * time.Second

	return grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority("localhost"),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize)),
		grpc.WithConnectParams(params),
	)
}

// socketPath mirrors cri-client's GetAddressAndDialer: "unix:///path", or a bare path.
func socketPath(endpoint string) (string, error) {
	proto, addr, err := parseEndpoint(endpoint)
	if err != nil && proto == "" {
		proto, addr, err = parseEndpoint("unix://" + endpoint)
	}

	if err != nil {
		return "", err
	}

	if proto != "unix" {
		return "", errors.New("only support unix socket endpoint")
	}

	return addr, nil
}

func parseEndpoint(endpoint string) (proto, addr string, err error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", "", err
	}

	switch u.Scheme {
	case "tcp":
		return "tcp", u.Host, nil
	case "unix":
		return "unix", u.Path, nil
	case "":
		return "", "", fmt.Errorf("using %q as endpoint is deprecated, please consider using full url format", endpoint)
	default:
		return u.Scheme, "", fmt.Errorf("protocol %q not supported", u.Scheme)
	}
}

// runtimeService returns a validated runtime client; timeout (if not 0) replaces --timeout,
// as crictl's --cancel-timeout does.
func (a *app) runtimeService(timeout time.Duration) (*runtimeClient, error) {
	if a.runtimeEndpointIsSet && a.runtimeEndpoint == "" {
		return nil, errors.New("--runtime-endpoint is not set")
	}

	t := a.timeout
	if timeout != 0 {
		t = timeout
	}

	if a.runtimeEndpointIsSet {
		return a.newRuntimeClient(a.runtimeEndpoint, t)
	}

	a.log.Warnf("runtime connect using default endpoints: %v. "+
		"As the default settings are now deprecated, you should set the endpoint instead.", defaultRuntimeEndpoints)

	var (
		rc  *runtimeClient
		err error
	)

	for _, ep := range defaultRuntimeEndpoints {
		if rc, err = a.newRuntimeClient(ep, t); err == nil {
			return rc, nil
		}

		a.log.Error(err)
	}

	return rc, err
}

// imageService returns a validated image client (image endpoint defaults to the runtime one).
func (a *app) imageService() (*imageClient, error) {
	if a.imageEndpoint == "" {
		if a.runtimeEndpointIsSet && a.runtimeEndpoint == "" {
			return nil, errors.New("--image-endpoint is not set")
		}

		a.imageEndpoint, a.imageEndpointIsSet = a.runtimeEndpoint, a.runtimeEndpointIsSet
	}

	if a.imageEndpointIsSet {
		return a.newImageClient(a.imageEndpoint, a.timeout)
	}

	a.log.Warnf("Image connect using default endpoints: %v. "+
		"As the default settings are now deprecated, you should set the endpoint instead.", defaultRuntimeEndpoints)

	var (
		ic  *imageClient
		err error
	)

	for _, ep := range defaultRuntimeEndpoints {
		if ic, err = a.newImageClient(ep, a.timeout); err == nil {
			return ic, nil
		}

		a.log.Error(err)
	}

	return ic, err
}

// klogError prints the error line cri-client logs through klog before returning an RPC
// error; site is cri-client's file:line in cri-tools v1.36.0.
func (a *app) klogError(site, msg string, err error, kv ...string) {
	now := time.Now()

	var b strings.Builder

	fmt.Fprintf(&b, "E%02d%02d %02d:%02d:%02d.%06d %7d %s] %s", now.Month(), now.Day(),
		now.Hour(), now.Minute(), now.Second(), now.Nanosecond()/1000, os.Getpid(), site, strconv.Quote(msg))
	b.WriteString(" err")
	writeKlogValue(&b, err.Error())

	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteString(" " + kv[i])
		writeKlogValue(&b, kv[i+1])
	}

	b.WriteByte('\n')
	io.WriteString(a.errOut, b.String()) //nolint:errcheck // best effort, like klog
}

// writeKlogValue writes "=value" the way klog's serializer does.
func writeKlogValue(b *strings.Builder, v string) {
	if !strings.Contains(v, "\n") {
		b.WriteString("=" + strconv.Quote(v))

		return
	}

	b.WriteString("=<\n")

	lines := strings.SplitAfter(v, "\n")
	for _, l := range lines {
		if l != "" {
			b.WriteString("\t" + l)
		}
	}

	if !strings.HasSuffix(v, "\n") {
		b.WriteString("\n")
	}

	b.WriteString(" >")
}

// interruptible runs an RPC and reports an abort by SIGINT/SIGTERM (the only cancellation
// that is not a deadline) the way crictl's InterruptableRPC does.
func interruptible[T any](ctx context.Context, call func(context.Context) (T, error)) (T, error) {
	res, err := call(ctx)
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return res, fmt.Errorf("interrupted: %w", ctx.Err())
	}

	return res, err
}

// --- flags (urfave/cli v2 semantics on top of the stdlib flag package) ---

type flagKind int

const (
	boolFlag flagKind = iota
	stringFlag
	durationFlag
	intFlag
	sliceFlag // repeatable, each value split at commas
)

type flagSpec struct {
	kind    flagKind
	name    string
	aliases []string
	value   string // default, as text
	env     []string
	usage   string
}

type flags struct {
	fs        *flag.FlagSet
	canonical map[string]string // name or alias -> name
	envSet    map[string]bool
	shortOpts bool // urfave's UseShortOptionHandling: "-qa" means "-q -a"
}

func newFlags(specs []flagSpec, shortOpts bool) (*flags, error) {
	f := &flags{
		fs:        flag.NewFlagSet(appName, flag.ContinueOnError),
		canonical: map[string]string{},
		envSet:    map[string]bool{},
		shortOpts: shortOpts,
	}
	f.fs.SetOutput(io.Discard)
	f.fs.Usage = func() {}

	for _, s := range specs {
		var v flag.Value

		switch s.kind {
		case boolFlag:
			f.fs.Bool(s.name, s.value == "true", s.usage)
		case stringFlag:
			f.fs.String(s.name, s.value, s.usage)
		case durationFlag:
			d, _ := time.ParseDuration(s.value)
			f.fs.Duration(s.name, d, s.usage)
		case intFlag:
			i, _ := strconv.ParseInt(s.value, 0, 64)
			f.fs.Int64(s.name, i, s.usage)
		case sliceFlag:
			f.fs.Var(&sliceValue{}, s.name, s.usage)
		}

		v = f.fs.Lookup(s.name).Value
		f.canonical[s.name] = s.name

		for _, al := range s.aliases {
			f.fs.Var(v, al, s.usage)
			f.canonical[al] = s.name
		}

		for _, env := range s.env {
			val, ok := os.LookupEnv(env)
			if !ok {
				continue
			}

			if sv, isSlice := v.(*sliceValue); isSlice {
				sv.setEnv(val)
			} else if err := v.Set(val); err != nil {
				return nil, fmt.Errorf("could not parse %q as %s value from environment variable %q for flag %s: %w",
					val, kindName(s.kind), env, s.name, err)
			}

			f.envSet[s.name] = true

			break
		}
	}

	return f, nil
}

func kindName(k flagKind) string {
	return [...]string{"bool", "string", "duration", "int", "slice"}[k]
}

// parse mirrors urfave/cli's parseIter: on "flag provided but not defined: -xy", when every
// letter is a defined flag, the argument is split into "-x -y" and parsing continues.
func (f *flags) parse(args []string) error {
	for {
		err := f.fs.Parse(args)
		if err == nil || !f.shortOpts {
			return err
		}

		name, found := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
		if !found {
			return err
		}

		i := slices.IndexFunc(args, func(a string) bool { return strings.TrimLeft(a, "-") == name })
		if i < 0 {
			return err
		}

		split := f.splitShortOptions(args[i])
		if len(split) == 1 {
			return err
		}

		args = append(split, args[i+1:]...)
	}
}

func (f *flags) splitShortOptions(arg string) []string {
	if !strings.HasPrefix(arg, "-") || strings.HasPrefix(arg, "--") || len(arg) <= 2 {
		return []string{arg}
	}

	out := make([]string, 0, len(arg)-1)

	for _, c := range arg[1:] {
		if f.fs.Lookup(string(c)) == nil {
			return []string{arg}
		}

		out = append(out, "-"+string(c))
	}

	return out
}

// Args returns the positional arguments (everything from the first non-flag argument on).
func (f *flags) Args() []string { return f.fs.Args() }

// IsSet reports whether a flag (by name or alias) was given on the command line or by env.
func (f *flags) IsSet(name string) bool {
	name = f.canonical[name]
	set := f.envSet[name]

	f.fs.Visit(func(fl *flag.Flag) {
		if f.canonical[fl.Name] == name {
			set = true
		}
	})

	return set
}

func (f *flags) get(name string) any {
	fl := f.fs.Lookup(name)
	if fl == nil {
		panic("crictl-lite: undefined flag " + name)
	}

	return fl.Value.(flag.Getter).Get()
}

func (f *flags) Bool(name string) bool              { return f.get(name).(bool) }
func (f *flags) String(name string) string          { return f.get(name).(string) }
func (f *flags) Duration(name string) time.Duration { return f.get(name).(time.Duration) }
func (f *flags) Int(name string) int64              { return f.get(name).(int64) }
func (f *flags) StringSlice(name string) []string   { return f.get(name).([]string) }

// sliceValue is urfave's StringSlice: values are split at commas; the first value given on
// the command line replaces one taken from the environment.
type sliceValue struct {
	values  []string
	fromEnv bool
}

func (s *sliceValue) setEnv(v string) {
	_ = s.Set(v)
	s.fromEnv = true
}

func (s *sliceValue) Set(v string) error {
	if s.fromEnv {
		s.values, s.fromEnv = nil, false
	}

	for _, part := range strings.Split(v, ",") {
		s.values = append(s.values, strings.TrimSpace(part))
	}

	return nil
}

func (s *sliceValue) String() string { return strings.Join(s.values, ",") }
func (s *sliceValue) Get() any       { return s.values }

// --- help ---

func (a *app) printAppHelp() {
	fmt.Fprintf(a.out, "NAME:\n   %s - client for CRI (crictl-lite, a subset of crictl v1.36.0)\n\n", appName)
	fmt.Fprintf(a.out, "USAGE:\n   %s [global options] command [command options]\n\nCOMMANDS:\n", appName)

	w := tabwriter.NewWriter(a.out, 0, 8, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(w, "   %s\t%s\n", strings.Join(append([]string{c.name}, c.aliases...), ", "), c.usage)
	}

	w.Flush()
	fmt.Fprint(a.out, "\nGLOBAL OPTIONS:\n")
	printFlags(a.out, globalFlags)
}

func (a *app) printCommandHelp(cmd *command, specs []flagSpec) {
	fmt.Fprintf(a.out, "NAME:\n   %s %s - %s\n\nUSAGE:\n   %s %s [command options] %s\n\nOPTIONS:\n",
		appName, cmd.name, cmd.usage, appName, cmd.name, cmd.argsUsage)
	printFlags(a.out, specs)
}

func printFlags(out io.Writer, specs []flagSpec) {
	w := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)

	for _, s := range specs {
		names := make([]string, 0, 1+len(s.aliases))
		for _, n := range append([]string{s.name}, s.aliases...) {
			dash, arg := "--", ""
			if len(n) == 1 {
				dash = "-"
			}

			if s.kind != boolFlag {
				arg = " value"
			}

			names = append(names, dash+n+arg)
		}

		usage := s.usage
		if s.value != "" && s.kind != boolFlag {
			usage += fmt.Sprintf(" (default: %q)", s.value)
		}

		if len(s.env) > 0 {
			usage += " [$" + strings.Join(s.env, ", $") + "]"
		}

		fmt.Fprintf(w, "   %s\t%s\n", strings.Join(names, ", "), usage)
	}

	w.Flush()
}

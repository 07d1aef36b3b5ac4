package checks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
)

// CNIProber passes when ConfDir holds a network configuration that containerd would load, and
// every plugin it names exists in BinDirs. It reads the first file in lexical order, as
// containerd's go-cni does (the default network); a broken first file fails the check, as it
// fails containerd.
type CNIProber struct {
	ConfDir string
	BinDirs []string
}

// Probe loads the configuration and looks up its plugins.
func (p CNIProber) Probe(context.Context) Outcome {
	files, err := libcni.ConfFiles(p.ConfDir, []string{".conf", ".conflist", ".json"})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Outcome{Detail: "CNI conf dir " + p.ConfDir + " does not exist"}
	case err != nil:
		return Outcome{Detail: fmt.Sprintf("reading CNI conf dir %s: %v", p.ConfDir, err), Err: true}
	case len(files) == 0:
		return Outcome{Detail: "no network config in CNI conf dir " + p.ConfDir}
	}
	sort.Strings(files)
	file := files[0]
	list, err := loadNetwork(file)
	if err != nil {
		return Outcome{Detail: fmt.Sprintf("CNI config %s does not load: %v", file, err)}
	}
	var types []string
	for _, pl := range list.Plugins {
		if pl.Network == nil || pl.Network.Type == "" {
			return Outcome{Detail: fmt.Sprintf("CNI config %s has a plugin without a type", file)}
		}
		if _, err := invoke.FindInPath(pl.Network.Type, p.BinDirs); err != nil {
			return Outcome{Detail: fmt.Sprintf("CNI plugin binary %s (named by %s) not found in %s",
				pl.Network.Type, filepath.Base(file), strings.Join(p.BinDirs, ":"))}
		}
		types = append(types, pl.Network.Type)
	}
	return Outcome{OK: true, Detail: fmt.Sprintf("%s (network %s): plugins %s present", filepath.Base(file), list.Name, strings.Join(types, ", "))}
}

// loadNetwork reads a .conflist, or a single-plugin .conf/.json turned into a list, like go-cni.
func loadNetwork(file string) (*libcni.NetworkConfigList, error) {
	if strings.HasSuffix(file, ".conflist") {
		return libcni.ConfListFromFile(file)
	}
	// Deprecated in libcni, but containerd (go-cni) still loads single-plugin files this way, and
	// the check must see what containerd sees.
	conf, err := libcni.ConfFromFile(file) //nolint:staticcheck // see above
	if err != nil {
		return nil, err
	}
	if conf.Network == nil || conf.Network.Type == "" {
		return nil, errors.New("no plugin type (a conflist in a .conf file?)")
	}
	return libcni.ConfListFromConf(conf) //nolint:staticcheck // see above
}

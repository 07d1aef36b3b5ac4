package containerdconfig

import (
	"fmt"
	"path/filepath"
	"time"
)

// info turns the merged state into Info, applying the CRI and NRI plugins'
// defaults, the 2.x version-2 migration and the 2.x local-pull fallback.
func (st *state) info(confDir string) (*Info, error) {
	info := &Info{
		Major:            st.line.Major(),
		Line:             st.line,
		EffectiveVersion: st.version,
		ImportPatterns:   append([]string(nil), st.patterns...),
		DisabledPlugins:  append([]string(nil), st.disabled...),
	}
	for _, f := range st.files {
		info.Files = append(info.Files, f.path)
	}
	// Any *.toml name works as the probe: the question is whether the
	// directory's glob is imported by a loaded file.
	info.ConfDirImported = info.WouldLoad(filepath.Join(confDir, "sandbox-guard.toml"))

	var err error
	if st.line.Major() == 1 {
		err = st.extract1(info)
	} else {
		err = st.extract2(info)
	}
	if err != nil {
		return nil, err
	}
	if err := st.extractNRI(info); err != nil {
		return nil, err
	}
	if info.RegistryConfigPath != "" {
		info.RegistryConfigDirs = filepath.SplitList(info.RegistryConfigPath)
	}
	return info, nil
}

// extract1 reads containerd 1.7's CRI plugin table.
func (st *state) extract1(info *Info) error {
	cri := PluginCRI
	if st.version < 2 {
		// 1.7 Config.Decode looks plugins up by short ID in version 1.
		cri = "cri"
	}
	img, ok, err := st.str(cri, "sandbox_image")
	if err != nil {
		return err
	}
	if ok {
		info.SandboxImage, info.SandboxImageFile = img, st.origin(cri, "sandbox_image")
		if img == "" {
			info.Warnings = append(info.Warnings, fmt.Sprintf("%s sets an empty sandbox_image: containerd 1.7 does not fall back to the default and every pod start fails", info.SandboxImageFile))
		}
	} else {
		info.SandboxImage, info.SandboxImageDefaulted = st.line.DefaultSandboxImage(), true
	}

	cp, ok, err := st.str(cri, "registry", "config_path")
	if err != nil {
		return err
	}
	if ok {
		info.RegistryConfigPath, info.RegistryConfigPathFile = cp, st.origin(cri, "registry", "config_path")
	}
	if info.RegistryMirrors, err = st.nonEmptyTable(st.plugins, nil, cri, "registry", "mirrors"); err != nil {
		return err
	}
	if cp != "" && info.RegistryMirrors {
		info.Warnings = append(info.Warnings, "registry mirrors and config_path are both set: the CRI plugin refuses to load (\"`mirrors` cannot be set when `config_path` is provided\")")
	}
	info.UseLocalImagePull = true
	info.UseLocalImagePullReason = "containerd 1.7 CRI always pulls with the local client"
	info.CRIDisabled = contains(st.disabled, cri)
	return nil
}

// extract2 reads containerd 2.x's CRI images table. Lines 2.0-2.2 migrate
// version-2 CRI tables here, on the merged config, when the merged version
// is below 3 (server.New runs the plugins' ConfigMigration for it,
// plugins/cri/images/plugin.go configMigration); from 2.3 on every file was
// migrated on its own before merging (see migrateFile).
func (st *state) extract2(info *Info) error {
	images := map[string]any{}
	if v, ok := st.plugins[PluginCRIImages]; ok {
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("containerd config %s: plugins.%q must be a table, got %T", st.originOfKey(PluginCRIImages), PluginCRIImages, v)
		}
		images = deepCopy(m).(map[string]any)
	}
	// Where a value of images came from: the images table itself or, when
	// migrated here, the 1.7-style table of a version-2 file.
	sandboxFrom := []string{PluginCRIImages, "pinned_images", "sandbox"}
	registryFrom := []string{PluginCRIImages, "registry"}

	grpc, hasGRPC := st.plugins[PluginCRI]
	if hasGRPC {
		src, ok := grpc.(map[string]any)
		if !ok {
			return fmt.Errorf("containerd config %s: plugins.%q must be a table, got %T", st.originOfKey(PluginCRI), PluginCRI, grpc)
		}
		if !st.line.perFileMigration() && st.version < st.line.ConfigVersion() {
			// Migration copies (and overrides) these keys; it runs on the
			// merged config, so it happens exactly when the last file with a
			// version line says version 2.
			if err := migrateImages(st.origin(PluginCRIImages, "pinned_images"), images, src); err != nil {
				return err
			}
			if _, ok := src["sandbox_image"]; ok {
				sandboxFrom = []string{PluginCRI, "sandbox_image"}
			}
			if _, ok := src["registry"]; ok {
				registryFrom = []string{PluginCRI, "registry"}
			}
		} else {
			for _, k := range []string{"sandbox_image", "registry"} {
				if _, ok := src[k]; !ok {
					continue
				}
				why := fmt.Sprintf("the effective config version is %d (set by %s), so version-2 tables are not migrated", st.version, st.versionFile)
				if st.line.perFileMigration() {
					why = fmt.Sprintf("it migrates only files of a version below %d", st.line.ConfigVersion())
				}
				info.Warnings = append(info.Warnings, fmt.Sprintf("%s sets plugins.%q %s, which containerd %s ignores: %s", st.origin(PluginCRI, k), PluginCRI, k, st.line, why))
			}
		}
	}

	// Sandbox image: getSandboxImageName falls back to the default when
	// pinned_images.sandbox is missing or empty.
	img, ok, err := typed[string](images, []string{PluginCRIImages}, st, "pinned_images", "sandbox")
	if err != nil {
		return err
	}
	if ok && img != "" {
		info.SandboxImage, info.SandboxImageFile = img, st.origin(sandboxFrom[0], sandboxFrom[1:]...)
	} else {
		info.SandboxImage, info.SandboxImageDefaulted = st.line.DefaultSandboxImage(), true
	}

	cp, ok, err := typed[string](images, []string{PluginCRIImages}, st, "registry", "config_path")
	if err != nil {
		return err
	}
	cpFrom := append(append([]string(nil), registryFrom...), "config_path")
	if ok {
		info.RegistryConfigPath, info.RegistryConfigPathFile = cp, st.origin(cpFrom[0], cpFrom[1:]...)
	}
	var configs, auths bool
	if info.RegistryMirrors, err = st.nonEmptyTable(images, []string{PluginCRIImages}, "registry", "mirrors"); err != nil {
		return err
	}
	if configs, err = st.nonEmptyTable(images, []string{PluginCRIImages}, "registry", "configs"); err != nil {
		return err
	}
	if auths, err = st.nonEmptyTable(images, []string{PluginCRIImages}, "registry", "auths"); err != nil {
		return err
	}
	switch {
	case cp == "" && !info.RegistryMirrors && st.line.defaultRegistryConfigPath() != "":
		// plugins/cri/images/plugin.go, Linux only, from 2.2 on.
		info.RegistryConfigPath, info.RegistryConfigPathFile, info.RegistryConfigPathDefaulted = st.line.defaultRegistryConfigPath(), "", true
	case cp != "" && info.RegistryMirrors:
		info.Warnings = append(info.Warnings, "registry mirrors and config_path are both set: the CRI images plugin refuses to load (\"`mirrors` cannot be set when `config_path` is provided\")")
	}

	// use_local_image_pull, then CheckLocalImagePullConfigs: settings the
	// transfer service cannot honour silently switch CRI to local pulls.
	local, ok, err := typed[bool](images, []string{PluginCRIImages}, st, "use_local_image_pull")
	if err != nil {
		return err
	}
	switch {
	case !st.line.transferPulls():
		info.UseLocalImagePull = true
		info.UseLocalImagePullReason = fmt.Sprintf("containerd %s CRI always pulls with the local client (no transfer service)", st.line)
	case ok && local:
		info.UseLocalImagePull = true
		info.UseLocalImagePullReason = fmt.Sprintf("use_local_image_pull = true in %s", st.origin(PluginCRIImages, "use_local_image_pull"))
	default:
		trigger, err := localPullTrigger(st, images, info.RegistryMirrors, configs, auths)
		if err != nil {
			return err
		}
		if trigger != "" {
			info.UseLocalImagePull = true
			info.UseLocalImagePullReason = "containerd falls back to local pulls: " + trigger + " is incompatible with the transfer service"
		}
	}

	info.CRIDisabled = contains(st.disabled, PluginCRI) || contains(st.disabled, PluginCRIImages)
	if _, ok := st.plugins["io.containerd.grpc.v1.nri"]; ok {
		info.Warnings = append(info.Warnings, fmt.Sprintf("%s has a version-1 [plugins.nri] table: containerd 2.x renames it to io.containerd.grpc.v1.nri and ignores it; use [plugins.%q]", st.originOfKey("io.containerd.grpc.v1.nri"), PluginNRI))
	}
	return nil
}

// migrateImages copies the part of containerd 2.x's images migration
// (plugins/cri/images/plugin.go migrateConfig) that affects what is read
// here; runtime_platform is left out. where names the file(s) for errors.
func migrateImages(where string, dst, src map[string]any) error {
	pinned := map[string]any{}
	if v, ok := dst["pinned_images"]; ok {
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("containerd config %s: plugins.%q.pinned_images must be a table, got %T", where, PluginCRIImages, v)
		}
		pinned = m
	}
	if img, ok := src["sandbox_image"]; ok {
		pinned["sandbox"] = img
	}
	if len(pinned) > 0 {
		dst["pinned_images"] = pinned
	}
	for _, k := range []string{"registry", "image_decryption", "max_concurrent_downloads", "image_pull_progress_timeout", "image_pull_with_sync_fs", "stats_collect_period"} {
		if v, ok := src[k]; ok {
			dst[k] = v
		}
	}
	// containerd returns early unless containerd.runtimes exists, so these
	// three keys move only from a table that also lists runtimes.
	c, ok := src["containerd"].(map[string]any)
	if !ok {
		return nil
	}
	if _, ok := c["runtimes"]; !ok {
		return nil
	}
	for _, k := range []string{"snapshotter", "disable_snapshot_annotations", "discard_unpacked_layers"} {
		if v, ok := c[k]; ok {
			dst[k] = v
		}
	}
	return nil
}

// localPullTrigger mirrors CheckLocalImagePullConfigs (Linux) in its order.
func localPullTrigger(st *state, images map[string]any, mirrors, configs, auths bool) (string, error) {
	from := []string{PluginCRIImages}
	dsa, ok, err := typed[bool](images, from, st, "disable_snapshot_annotations")
	if err != nil {
		return "", err
	}
	if ok && !dsa { // default true
		return "disable_snapshot_annotations = false", nil
	}
	if v, _, err := typed[bool](images, from, st, "discard_unpacked_layers"); err != nil || v {
		return "discard_unpacked_layers = true", err
	}
	switch {
	case mirrors:
		return "registry.mirrors", nil
	case configs:
		return "registry.configs", nil
	case auths:
		return "registry.auths", nil
	}
	if n, ok, err := typed[int64](images, from, st, "max_concurrent_downloads"); err != nil {
		return "", err
	} else if ok && n != 3 {
		return fmt.Sprintf("max_concurrent_downloads = %d", n), nil
	}
	if v, _, err := typed[bool](images, from, st, "image_pull_with_sync_fs"); err != nil || v {
		return "image_pull_with_sync_fs = true", err
	}
	return "", nil
}

// extractNRI reads the NRI plugin table with its defaults: disabled in 1.7,
// enabled in 2.x; empty paths and zero timeouts keep the defaults
// (Config.toOptions / ConfigureTimeouts skip them).
func (st *state) extractNRI(info *Info) error {
	key := PluginNRI
	if st.line.Major() == 1 && st.version < 2 {
		key = "nri"
	}
	n := NRI{
		SocketPath:          DefaultNRISocketPath,
		PluginPath:          DefaultNRIPluginPath,
		PluginConfigPath:    DefaultNRIPluginConfigPath,
		RegistrationTimeout: DefaultNRIRegistrationTimeout,
		RequestTimeout:      DefaultNRIRequestTimeout,
	}
	if st.line.Major() == 1 {
		n.Disabled, n.DisabledReason = true, "containerd 1.7 default"
	} else {
		n.DisabledReason = "containerd 2.x default (enabled)"
	}
	tbl := map[string]any{}
	if v, ok := st.plugins[key]; ok {
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("containerd config %s: plugins.%q must be a table, got %T", st.originOfKey(key), key, v)
		}
		tbl = m
	}
	from := []string{key}
	if d, ok, err := typed[bool](tbl, from, st, "disable"); err != nil {
		return err
	} else if ok {
		n.Disabled, n.DisabledReason = d, fmt.Sprintf("disable = %t in %s", d, st.origin(key, "disable"))
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"socket_path", &n.SocketPath}, {"plugin_path", &n.PluginPath}, {"plugin_config_path", &n.PluginConfigPath}} {
		v, ok, err := typed[string](tbl, from, st, f.key)
		if err != nil {
			return err
		}
		if ok && v != "" {
			*f.dst = v
		}
	}
	for _, f := range []struct {
		key string
		dst *time.Duration
	}{{"plugin_registration_timeout", &n.RegistrationTimeout}, {"plugin_request_timeout", &n.RequestTimeout}} {
		d, err := st.duration(tbl, key, f.key)
		if err != nil {
			return err
		}
		if d != 0 {
			*f.dst = d
		}
	}
	dc, _, err := typed[bool](tbl, from, st, "disable_connections")
	if err != nil {
		return err
	}
	n.DisableConnections = dc
	if contains(st.disabled, key) {
		n.Disabled, n.DisabledReason = true, fmt.Sprintf("%s is in disabled_plugins", key)
	}
	info.NRI = n
	return nil
}

// duration parses an NRI timeout: a Go duration string in both versions;
// 1.7's go-toml v1 also took an integer as nanoseconds.
func (st *state) duration(tbl map[string]any, key, name string) (time.Duration, error) {
	v, ok := tbl[name]
	if !ok {
		return 0, nil
	}
	switch t := v.(type) {
	case string:
		d, err := time.ParseDuration(t)
		if err != nil {
			return 0, fmt.Errorf("containerd config %s: plugins.%q.%s: %w", st.origin(key, name), key, name, err)
		}
		return d, nil
	case int64:
		if st.line.Major() == 1 {
			return time.Duration(t), nil
		}
	}
	return 0, fmt.Errorf("containerd config %s: plugins.%q.%s must be a duration string, got %T", st.origin(key, name), key, name, v)
}

// str reads a string from the merged plugin tables.
func (st *state) str(key string, path ...string) (string, bool, error) {
	return typed[string](st.plugins, nil, st, append([]string{key}, path...)...)
}

// typed reads m[path...] as T. A value of the wrong type (or a non-table on
// the way) is an error: containerd's decode of that plugin's config would
// fail too. from names the plugin path the value came from for the error
// (nil: path starts with the plugin key).
func typed[T any](m map[string]any, from []string, st *state, path ...string) (T, bool, error) {
	var zero T
	var cur any = m
	for i, k := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return zero, false, st.typeErr(from, path[:i], "a table", cur)
		}
		if cur, ok = mm[k]; !ok {
			return zero, false, nil
		}
	}
	v, ok := cur.(T)
	if !ok {
		return zero, false, st.typeErr(from, path, fmt.Sprintf("a %T", zero), cur)
	}
	return v, true, nil
}

func (st *state) typeErr(from, path []string, want string, got any) error {
	full := append(append([]string(nil), from...), path...)
	file := ""
	if len(full) > 0 {
		file = st.origin(full[0], full[1:]...)
	}
	name := "plugins"
	for i, p := range full {
		if i == 0 {
			name += fmt.Sprintf(".%q", p)
		} else {
			name += "." + p
		}
	}
	if file == "" {
		file = "(merged)"
	}
	return fmt.Errorf("containerd config %s: %s must be %s, got %T", file, name, want, got)
}

// nonEmptyTable reports whether m[path...] is a table with entries.
func (st *state) nonEmptyTable(m map[string]any, from []string, path ...string) (bool, error) {
	t, _, err := typed[map[string]any](m, from, st, path...)
	return len(t) > 0, err
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

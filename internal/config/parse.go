package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// Parse reads YAML configuration text strictly: unknown keys, duplicate keys, wrong types and
// invalid values are errors naming the key. source names where the text came from (a file).
// Keys left out keep their defaults.
func Parse(data []byte, source string) (*Config, error) {
	cfg := Default()
	if len(bytes.TrimSpace(data)) == 0 {
		return cfg, cfg.validate(source)
	}
	js, err := yamlToJSON(data)
	if err != nil {
		return nil, &Error{Source: source, Msg: "not valid YAML: " + err.Error()}
	}
	var tree any
	if err := json.Unmarshal(js, &tree); err != nil {
		return nil, &Error{Source: source, Msg: "not valid YAML: " + err.Error()}
	}
	if tree == nil {
		return cfg, cfg.validate(source)
	}
	if err := checkShape(tree, reflect.TypeOf(Config{}), ""); err != nil {
		err.Source = source
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		// checkShape has seen every key and value, so this is a bug rather than bad input.
		return nil, &Error{Source: source, Msg: err.Error()}
	}
	return cfg, cfg.validate(source)
}

// ParseLenient reads what it can of a configuration that Parse rejected, ignoring unknown keys.
// The pre-registered plugin uses it only to find where to log the error about the file.
func ParseLenient(data []byte) *Config {
	cfg := Default()
	js, err := yamlToJSON(data)
	if err != nil {
		return cfg
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(js, &top) != nil {
		return cfg
	}
	// Key by key, so that one bad value does not lose the others (log.file above all).
	fields := jsonFields(reflect.TypeOf(Config{}))
	v := reflect.ValueOf(cfg).Elem()
	for k, raw := range top {
		f, ok := fields[k]
		if !ok {
			continue
		}
		dst := reflect.New(f.Type)
		dst.Elem().Set(v.FieldByIndex(f.Index))
		if json.Unmarshal(raw, dst.Interface()) == nil {
			v.FieldByIndex(f.Index).Set(dst.Elem())
		}
	}
	return cfg
}

// yamlToJSON reads YAML 1.2, where `off`, `no` and `on` are strings (YAML 1.1, which
// sigs.k8s.io/yaml's converter follows, turns `mode: off` into a boolean), and rejects duplicate
// keys.
func yamlToJSON(data []byte) ([]byte, error) {
	var v any
	if err := yamlv3.Unmarshal(data, &v); err != nil {
		return nil, errors.New(strings.Join(strings.Fields(strings.TrimPrefix(err.Error(), "yaml: ")), " "))
	}
	js, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("only string keys are allowed: %w", err)
	}
	return js, nil
}

var unmarshalerType = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()

// checkShape walks the decoded YAML against the Go type and reports the first key that is
// unknown or holds a value of the wrong type, with its full path (checks[1].file.path), which
// encoding/json's own errors do not give.
func checkShape(v any, t reflect.Type, path string) *Error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return decodeLeaf(v, t, path)
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return &Error{Key: path, Msg: "want a mapping, got " + describe(v)}
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f, ok := fields[k]
			if !ok {
				known := make([]string, 0, len(fields))
				for name := range fields {
					known = append(known, name)
				}
				sort.Strings(known)
				return &Error{Key: join(path, k), Msg: "unknown key (known keys here: " + strings.Join(known, ", ") + ")"}
			}
			if err := checkShape(m[k], f.Type, join(path, k)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			return &Error{Key: path, Msg: "want a list, got " + describe(v)}
		}
		for i, e := range l {
			if err := checkShape(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return &Error{Key: path, Msg: "want a mapping, got " + describe(v)}
		}
		for k, e := range m {
			if err := checkShape(e, t.Elem(), join(path, k)); err != nil {
				return err
			}
		}
		return nil
	default:
		return decodeLeaf(v, t, path)
	}
}

func decodeLeaf(v any, t reflect.Type, path string) *Error {
	b, _ := json.Marshal(v)
	if err := json.Unmarshal(b, reflect.New(t).Interface()); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &Error{Key: path, Msg: fmt.Sprintf("want %s, got %s", kindName(t), describe(v))}
		}
		return &Error{Key: path, Msg: err.Error()}
	}
	return nil
}

// jsonFields maps the JSON names of t's fields to the fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	default:
		return t.Kind().String()
	}
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case float64:
		return fmt.Sprintf("number %v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	default:
		return fmt.Sprintf("%T", v)
	}
}

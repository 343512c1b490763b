package config

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// FieldError is one problem in a config file, located by line and field path.
type FieldError struct {
	File  string
	Line  int
	Field string // e.g. pools[0].addresses[1]
	Msg   string
	// Member, when set, is the member whose host-local keys the error
	// is about (Facts.Check): another host than this one.
	Member string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file. Its message has one line each.
type Errors []*FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// decoder walks a YAML node tree, converting leaves to typed values and
// collecting every error with its line and field path. It never panics on
// any input: a node of the wrong kind is an error, not an assumption.
type decoder struct {
	file string
	errs Errors
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &FieldError{File: d.file, Line: line, Field: path, Msg: fmt.Sprintf(format, args...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// resolve follows aliases so that anchors work as users expect.
func resolve(n *yaml.Node) *yaml.Node {
	for depth := 0; n != nil && n.Kind == yaml.AliasNode && depth < 16; depth++ {
		n = n.Alias
	}
	return n
}

// mapping calls fields[key] for each key of the mapping n and reports keys
// that are not in fields, and keys given twice.
func (d *decoder) mapping(n *yaml.Node, path string, fields map[string]func(*yaml.Node, string)) {
	n = resolve(n)
	if n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			d.errorf(n.Content[i], path, "keys must be plain strings")
			continue
		}
		f, ok := fields[k.Value]
		if !ok {
			known := make([]string, 0, len(fields))
			for name := range fields {
				known = append(known, name)
			}
			slices.Sort(known)
			d.errorf(k, join(path, k.Value), "unknown key (known keys here: %s)", strings.Join(known, ", "))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, join(path, k.Value), "key given twice")
			continue
		}
		seen[k.Value] = true
		f(v, join(path, k.Value))
	}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// list calls each(i, item, path) for each item of the sequence n.
func (d *decoder) list(n *yaml.Node, path string, each func(int, *yaml.Node, string)) {
	n = resolve(n)
	if n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "must be a list")
		return
	}
	for i, item := range n.Content {
		each(i, item, index(path, i))
	}
}

func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	n = resolve(n)
	if n == nil || isNull(n) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "must be a single value, not a list or mapping")
		return "", false
	}
	return n.Value, true
}

func (d *decoder) str(n *yaml.Node, path string, dst *string) {
	if s, ok := d.scalar(n, path); ok {
		*dst = s
	}
}

func (d *decoder) strs(n *yaml.Node, path string, dst *[]string) {
	*dst = nil
	d.list(n, path, func(_ int, item *yaml.Node, p string) {
		var s string
		d.str(item, p, &s)
		*dst = append(*dst, s)
	})
}

func (d *decoder) boolean(n *yaml.Node, path string, dst *bool) {
	s, ok := d.scalar(n, path)
	if !ok {
		return
	}
	switch strings.ToLower(s) {
	case "true", "yes", "on":
		*dst = true
	case "false", "no", "off":
		*dst = false
	default:
		d.errorf(n, path, "%q is not true or false", s)
	}
}

func (d *decoder) integer(n *yaml.Node, path string, min, max int64, dst *int64) bool {
	s, ok := d.scalar(n, path)
	if !ok {
		return false
	}
	v, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		d.errorf(n, path, "%q is not a whole number", s)
		return false
	}
	if v < min || v > max {
		d.errorf(n, path, "%d is out of range [%d, %d]", v, min, max)
		return false
	}
	*dst = v
	return true
}

func (d *decoder) intField(n *yaml.Node, path string, min, max int64, dst *int) {
	var v int64
	if d.integer(n, path, min, max, &v) {
		*dst = int(v)
	}
}

func (d *decoder) port(n *yaml.Node, path string, dst *uint16) {
	var v int64
	if d.integer(n, path, 1, math.MaxUint16, &v) {
		*dst = uint16(v)
	}
}

func (d *decoder) float(n *yaml.Node, path string, dst *float32) {
	s, ok := d.scalar(n, path)
	if !ok {
		return
	}
	v, err := strconv.ParseFloat(s, 32)
	if err != nil || v <= 0 || math.IsInf(v, 0) {
		d.errorf(n, path, "%q is not a positive number", s)
		return
	}
	*dst = float32(v)
}

func (d *decoder) duration(n *yaml.Node, path string, dst *time.Duration) {
	s, ok := d.scalar(n, path)
	if !ok {
		return
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.errorf(n, path, "%q is not a duration like 500ms or 2s", s)
		return
	}
	if v <= 0 {
		d.errorf(n, path, "must be positive, got %s", s)
		return
	}
	*dst = v
}

// durationIn decodes a duration that must lie in [min, max], with why
// (the reason for the bounds) in the message.
func (d *decoder) durationIn(n *yaml.Node, path string, min, max time.Duration, why string, dst *time.Duration) {
	var v time.Duration
	d.duration(n, path, &v)
	if v == 0 {
		return // already reported
	}
	if v < min || v > max {
		d.errorf(n, path, "%s is out of range: use %s to %s (%s)", v, min, max, why)
		return
	}
	*dst = v
}

// enum decodes a string that must be one of allowed.
func (d *decoder) enum(n *yaml.Node, path string, allowed []string, dst *string) {
	s, ok := d.scalar(n, path)
	if !ok {
		return
	}
	for _, a := range allowed {
		if s == a {
			*dst = s
			return
		}
	}
	d.errorf(n, path, "%q is not one of %s", s, strings.Join(allowed, ", "))
}

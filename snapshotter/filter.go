package snapshotter

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The subset of containerd's filter syntax Walk takes: a filter is
// selectors joined by ',' (all must match), several filters match when
// any does. A selector is a field path — name, kind, parent, or
// labels.<key> (the key bare or "quoted") — alone (the field is present),
// or followed by ==, != or ~= (a regular expression) and a value (bare or
// "quoted").

type selector struct {
	path  []string // ["labels", key] or [field]
	op    string   // "" (present), "==", "!=", "~="
	value string
	re    *regexp.Regexp
}

// ParseFilters compiles filters into one predicate; none matches all.
func ParseFilters(filters ...string) (func(Info) bool, error) {
	var any [][]selector
	for _, f := range filters {
		if strings.TrimSpace(f) == "" {
			continue
		}
		sels, err := parseFilter(f)
		if err != nil {
			return nil, fmt.Errorf("%w: filter %q: %w", ErrInvalidArgument, f, err)
		}
		any = append(any, sels)
	}
	return func(info Info) bool {
		if len(any) == 0 {
			return true
		}
		for _, sels := range any {
			if matchAll(sels, info) {
				return true
			}
		}
		return false
	}, nil
}

func matchAll(sels []selector, info Info) bool {
	for _, s := range sels {
		if !s.match(info) {
			return false
		}
	}
	return true
}

func (s selector) match(info Info) bool {
	v, ok := fieldOf(info, s.path)
	switch s.op {
	case "":
		return ok
	case "==":
		return ok && v == s.value
	case "!=": // as containerd: an absent field compares as ""
		return v != s.value
	}
	return ok && s.re.MatchString(v)
}

func fieldOf(info Info, path []string) (string, bool) {
	if len(path) == 2 && path[0] == "labels" {
		v, ok := info.Labels[path[1]]
		return v, ok
	}
	switch path[0] {
	case "name":
		return info.Name, true
	case "kind":
		return strings.ToLower(info.Kind.String()), true
	case "parent":
		return info.Parent, info.Parent != ""
	}
	return "", false
}

// parseFilter parses one filter: selectors separated by ','.
func parseFilter(f string) ([]selector, error) {
	var sels []selector
	rest := f
	for {
		s, r, err := parseSelector(strings.TrimLeft(rest, " "))
		if err != nil {
			return nil, err
		}
		sels = append(sels, s)
		rest = strings.TrimLeft(r, " ")
		if rest == "" {
			return sels, nil
		}
		if rest[0] != ',' {
			return nil, fmt.Errorf("expected ',' at %q", rest)
		}
		rest = rest[1:]
	}
}

func parseSelector(in string) (selector, string, error) {
	var s selector
	field, rest, err := token(in)
	if err != nil {
		return s, "", err
	}
	s.path = []string{field}
	switch field {
	case "labels":
		if !strings.HasPrefix(rest, ".") {
			return s, "", fmt.Errorf("labels needs a key: labels.<key>")
		}
		key, r, err := token(rest[1:])
		if err != nil {
			return s, "", err
		}
		s.path, rest = append(s.path, key), r
	case "name", "kind", "parent":
	default:
		return s, "", fmt.Errorf("unknown field %q", field)
	}
	rest = strings.TrimLeft(rest, " ")
	for _, op := range []string{"==", "!=", "~="} {
		if strings.HasPrefix(rest, op) {
			return s.withValue(op, strings.TrimLeft(rest[2:], " "))
		}
	}
	return s, rest, nil
}

func (s selector) withValue(op, in string) (selector, string, error) {
	v, rest, err := valueToken(in)
	if err != nil {
		return s, "", fmt.Errorf("value: %w", err)
	}
	s.op, s.value = op, v
	if op == "~=" {
		if s.re, err = regexp.Compile(v); err != nil {
			return s, "", err
		}
	}
	return s, rest, nil
}

// token reads a "quoted" string or a bare one (up to . , = ! ~ or space).
func token(in string) (string, string, error) {
	if strings.HasPrefix(in, `"`) {
		q, err := strconv.QuotedPrefix(in)
		if err != nil {
			return "", "", fmt.Errorf("bad quoted string at %q", in)
		}
		v, _ := strconv.Unquote(q)
		return v, in[len(q):], nil
	}
	end := strings.IndexAny(in, `.,=!~ "`)
	if end < 0 {
		end = len(in)
	}
	if end == 0 {
		return "", "", fmt.Errorf("expected a name or value at %q", in)
	}
	return in[:end], in[end:], nil
}

// valueToken reads a "quoted" value or a bare one, up to ',' or a space.
func valueToken(in string) (string, string, error) {
	if strings.HasPrefix(in, `"`) {
		return token(in)
	}
	end := strings.IndexAny(in, ", ")
	if end < 0 {
		end = len(in)
	}
	return in[:end], in[end:], nil
}

// updateLabels applies an Update's fieldpaths: none or "labels" replace
// all labels, "labels.<key>" sets (or, absent from next, removes) one.
func updateLabels(cur, next map[string]string, fieldpaths []string) (map[string]string, error) {
	if len(fieldpaths) == 0 {
		return next, nil
	}
	out := make(map[string]string, len(cur))
	for k, v := range cur {
		out[k] = v
	}
	for _, p := range fieldpaths {
		switch key, isLabel := strings.CutPrefix(p, "labels."); {
		case p == "labels":
			out = make(map[string]string, len(next))
			for k, v := range next {
				out[k] = v
			}
		case isLabel && key != "":
			if v, ok := next[key]; ok {
				out[key] = v
			} else {
				delete(out, key)
			}
		default:
			return nil, fmt.Errorf("%w: cannot update field %q", ErrInvalidArgument, p)
		}
	}
	return out, nil
}

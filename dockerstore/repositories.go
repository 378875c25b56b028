package dockerstore

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Ref is one name of an image: "repo:tag", or "repo@sha256:…" for a
// pulled digest.
type Ref struct {
	Repo  string `json:"repository"`
	Ref   string `json:"ref"`
	Image Digest `json:"image"`
}

// Tag is the part after "repo:" ("" for a digest reference).
func (r Ref) Tag() string {
	t, _ := strings.CutPrefix(r.Ref, r.Repo+":")
	if t == r.Ref {
		return ""
	}
	return t
}

// IsDigest says whether the reference is "repo@sha256:…".
func (r Ref) IsDigest() bool { return strings.HasPrefix(r.Ref, r.Repo+"@") }

// ParseRepositories reads repositories.json: {"Repositories": {repo:
// {ref: image id}}}. Each ref must be its repo's, each id a digest.
// Refs come sorted.
func ParseRepositories(b []byte) ([]Ref, error) {
	var doc struct {
		Repositories map[string]map[string]string
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: repositories.json: %w", ErrInvalid, err)
	}
	var refs []Ref
	for repo, m := range doc.Repositories {
		if !validRepo(repo) {
			return nil, fmt.Errorf("%w: repositories.json: repository name %q", ErrInvalid, truncate(repo))
		}
		for ref, id := range m {
			r := Ref{Repo: repo, Ref: ref}
			if !validRef(r) {
				return nil, fmt.Errorf("%w: repositories.json: %q is not a reference of %q", ErrInvalid, truncate(ref), repo)
			}
			d, err := ParseDigest(id)
			if err != nil {
				return nil, fmt.Errorf("repositories.json: %s: %w", ref, err)
			}
			r.Image = d
			refs = append(refs, r)
		}
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].Ref < refs[j].Ref })
	return refs, nil
}

// validRepo: lowercase letters, digits, separators . _ - / and a
// registry's host:port — what a reference may hold, no control bytes.
func validRepo(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("._-/:", c) >= 0 || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return validPort(s)
}

// validPort: a ':' only as a registry's port, digits in the first of
// several path components ("host:5000/name").
func validPort(repo string) bool {
	i := strings.IndexByte(repo, ':')
	if i < 0 {
		return true
	}
	port, rest, ok := strings.Cut(repo[i+1:], "/")
	if !ok || port == "" || strings.IndexByte(repo[:i], '/') >= 0 || strings.IndexByte(rest, ':') >= 0 {
		return false
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func validRef(r Ref) bool {
	if rest, ok := strings.CutPrefix(r.Ref, r.Repo+"@"); ok {
		_, err := ParseDigest(rest)
		return err == nil
	}
	tag, ok := strings.CutPrefix(r.Ref, r.Repo+":")
	if !ok || tag == "" || len(tag) > 128 {
		return false
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// Refs reads the store's repositories.json (none if it is absent).
func (s *Store) Refs() ([]Ref, error) {
	b, err := readFile(s.image, "repositories.json", maxReposFile)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseRepositories(b)
}

// NormalizeTag checks s is "repo:tag" or "repo" and returns the former
// (":latest" added).
func NormalizeTag(s string) (string, error) {
	repo, _ := splitTag(s)
	r := Ref{Repo: repo, Ref: s}
	if repo == s {
		r.Ref = s + ":latest"
	}
	if !validRepo(repo) || !validRef(r) {
		return "", fmt.Errorf("%w: %q is not a NAME:TAG", ErrInvalid, truncate(s))
	}
	return r.Ref, nil
}

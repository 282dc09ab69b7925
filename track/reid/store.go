package reid

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxTemplates is how many embeddings one identity keeps: views of the
// face at different moments (pose, expression, light), matched by the
// best of them.
const MaxTemplates = 8

// Templates are one identity's embeddings with the quality of the view
// each came from. The first is kept; the others are replaced, lowest
// quality first, once MaxTemplates are there.
type Templates struct {
	E []Embedding `json:"e"`
	Q []float32   `json:"q"`
}

// Add keeps e (quality q, higher better) among the templates.
func (t *Templates) Add(e Embedding, q float32) {
	if len(t.E) < MaxTemplates {
		t.E, t.Q = append(t.E, e), append(t.Q, q)
		return
	}
	low := 1
	for i := 2; i < len(t.Q); i++ {
		if t.Q[i] < t.Q[low] {
			low = i
		}
	}
	if q >= t.Q[low] {
		t.E[low], t.Q[low] = e, q
	}
}

// Merge adds o's templates to t (o's best first).
func (t *Templates) Merge(o Templates) {
	idx := make([]int, len(o.E))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return o.Q[idx[a]] > o.Q[idx[b]] })
	for _, i := range idx {
		t.Add(o.E[i], o.Q[i])
	}
}

// Match is the best cosine of e against the templates (−1 with none).
func (t *Templates) Match(e *Embedding) float32 {
	best := float32(-1)
	for i := range t.E {
		best = max(best, Cosine(&t.E[i], e))
	}
	return best
}

// Clone is a deep copy.
func (t Templates) Clone() Templates {
	return Templates{E: slices.Clone(t.E), Q: slices.Clone(t.Q)}
}

// Person is one enrolled identity as GET /v1/identities lists it; the
// embeddings only when asked for.
type Person struct {
	Name      string    `json:"name"`
	Enrolled  time.Time `json:"enrolled"`
	Source    string    `json:"source"` // "stream s/3" or "photo"
	Templates int       `json:"templates"`
	// Embeddings are the templates' vectors: never sent unless asked
	// (GET /v1/identities?embeddings=true).
	Embeddings []Embedding `json:"embeddings,omitempty"`
}

type enrolled struct {
	Name     string    `json:"name"`
	Enrolled time.Time `json:"enrolled"`
	Source   string    `json:"source"`
	Model    string    `json:"model"`
	T        Templates `json:"templates"`
}

// storeFile is the file's layout (version 1).
type storeFile struct {
	Version int        `json:"version"`
	People  []enrolled `json:"people"`
}

// Limits of the store: names people type, and a bound on the file.
const (
	MaxNameBytes = 64
	MaxPeople    = 10000
)

// ValidName checks an enrolled name: 1 to MaxNameBytes bytes of UTF-8,
// letters, digits, spaces and punctuation, no control characters, not
// blank.
func ValidName(name string) error {
	switch {
	case name == "" || len(name) > MaxNameBytes:
		return fmt.Errorf("a name is 1 to %d bytes", MaxNameBytes)
	case !utf8.ValidString(name):
		return errors.New("a name must be UTF-8")
	}
	blank := true
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("a name may not hold %q", r)
		}
		if !unicode.IsSpace(r) {
			blank = false
		}
	}
	if blank {
		return errors.New("a name may not be blank")
	}
	return nil
}

// Store holds the enrolled identities, in memory and (with a path) in a
// file, rewritten whole (atomically, mode 0600) on every change. It is safe
// for concurrent use. Embeddings are comparable only between embedders of
// the same model file: the store records the model's identity (its
// ModelID) and refuses a file written for another.
type Store struct {
	path  string
	model string

	mu     sync.RWMutex
	people []enrolled
}

// OpenStore loads the store at path ("" keeps it in memory only); a
// missing file is an empty store. model names the embedder's model
// (ModelID) that the embeddings come from.
func OpenStore(path, model string) (*Store, error) {
	s := &Store{path: path, model: model}
	if path == "" {
		return s, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	var f storeFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("%s: version %d, want 1", path, f.Version)
	}
	if len(f.People) > MaxPeople {
		return nil, fmt.Errorf("%s: %d people, at most %d", path, len(f.People), MaxPeople)
	}
	seen := map[string]bool{}
	for i, p := range f.People {
		if err := ValidName(p.Name); err != nil {
			return nil, fmt.Errorf("%s: person %d: %w", path, i+1, err)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("%s: %q enrolled twice", path, p.Name)
		}
		seen[p.Name] = true
		if p.Model != model {
			return nil, fmt.Errorf("%s: %q was enrolled with another embedding model (%s, not %s): delete the file and enrol again", path, p.Name, p.Model, model)
		}
		if n := len(p.T.E); n == 0 || n > MaxTemplates || len(p.T.Q) != n {
			return nil, fmt.Errorf("%s: %q has %d embeddings and %d qualities (1 to %d)", path, p.Name, n, len(p.T.Q), MaxTemplates)
		}
	}
	s.people = f.People
	return s, nil
}

// Add enrols name with the templates t (replacing a person of that name).
func (s *Store) Add(name, source string, t Templates) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if len(t.E) == 0 {
		return errors.New("no embedding to enrol")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := enrolled{Name: name, Enrolled: time.Now().UTC().Truncate(time.Second), Source: source, Model: s.model, T: t.Clone()}
	next := slices.Clone(s.people)
	if i := slices.IndexFunc(next, func(e enrolled) bool { return e.Name == name }); i >= 0 {
		next[i] = p
	} else {
		if len(next) >= MaxPeople {
			return fmt.Errorf("%d people enrolled already", MaxPeople)
		}
		next = append(next, p)
	}
	if err := s.save(next); err != nil {
		return err
	}
	s.people = next
	return nil
}

// Delete removes name; false if nobody has it.
func (s *Store) Delete(name string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.people, func(e enrolled) bool { return e.Name == name })
	if i < 0 {
		return false, nil
	}
	next := slices.Delete(slices.Clone(s.people), i, i+1)
	if err := s.save(next); err != nil {
		return false, err
	}
	s.people = next
	return true, nil
}

// List returns the enrolled people by name, with their embeddings only
// when embeddings is true.
func (s *Store) List(embeddings bool) []Person {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Person, 0, len(s.people))
	for _, p := range s.people {
		q := Person{Name: p.Name, Enrolled: p.Enrolled, Source: p.Source, Templates: len(p.T.E)}
		if embeddings {
			q.Embeddings = slices.Clone(p.T.E)
		}
		out = append(out, q)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Match returns the enrolled person whose templates come closest to e,
// and that cosine; "" and −1 with nobody enrolled.
func (s *Store) Match(e *Embedding) (string, float32) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	name, best := "", float32(-1)
	for i := range s.people {
		if c := s.people[i].T.Match(e); c > best {
			name, best = s.people[i].Name, c
		}
	}
	return name, best
}

// save writes people to the file: a temporary file in the same directory,
// synced, renamed over the old one.
func (s *Store) save(people []enrolled) error {
	if s.path == "" {
		return nil
	}
	data, err := json.Marshal(storeFile{Version: 1, People: people})
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".identities-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.path)
}

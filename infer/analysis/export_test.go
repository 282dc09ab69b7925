package analysis

// StateOf is face id's state, as an opaque pointer (nil: none): tests see
// whether a face that came back has its old state. Call it on the
// analyzer's goroutine (from a sink).
func (a *Analyzer) StateOf(id string) any {
	if fs := a.faces[id]; fs != nil {
		return fs
	}
	return nil
}

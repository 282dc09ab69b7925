// Package record writes a source's results to files: OpenFace 2's CSV
// columns (CSV) or the websocket protocol's frame objects, one per line
// (JSONL), through a Writer that makes the output resumable.
//
// A Writer is an analysis.Sink used by one analyzer's goroutine. Its file
// grows as <path>.partial (or Options.Partial); every Every frames it
// syncs the file and records, in the partial's name with ".state" added,
// the frames and bytes done and a signature of everything that made them.
// A later run with the same signature truncates the partial file to the
// recorded bytes and carries on (LoadState); Finish renames the complete
// file into place. Workers sharing an output folder each grow their own
// partial and copy another's checkpoint (Adopt) rather than write into it.
package record

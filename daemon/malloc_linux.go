package daemon

/*
#include <malloc.h>
*/
import "C"

import (
	"os"
	"strconv"
)

// The daemon's native memory (ONNX Runtime, OpenCV, FFmpeg, GStreamer,
// dlib) comes from glibc's malloc, which by default gives each thread
// that contends for a lock its own arena, up to 8 per core, and returns
// freed memory to the kernel only from the top of each heap. Under stream
// churn (reconnects, reloads, WHIP sessions: threads and buffers made and
// freed on many threads) freed memory stays resident in those arenas and
// RSS creeps up for hours without a leak. Two remedies, both standard for
// long-running cgo services:
//
//   - cap the arenas (MALLOC_ARENA_MAX, when the operator has not set it);
//   - malloc_trim(0) every minute from the daemon's loop, which returns
//     the free pages of every arena (not only their tops) to the kernel.

// mallocArenas is the arena cap the daemon sets unless MALLOC_ARENA_MAX is
// in its environment.
const mallocArenas = 4

// tuneMalloc caps glibc's arenas; it reports the cap in force.
func tuneMalloc() string {
	if v := os.Getenv("MALLOC_ARENA_MAX"); v != "" {
		return v + " (MALLOC_ARENA_MAX)"
	}
	C.mallopt(C.M_ARENA_MAX, C.int(mallocArenas))
	return strconv.Itoa(mallocArenas)
}

// trimMalloc returns free native memory to the kernel.
func trimMalloc() { C.malloc_trim(0) }

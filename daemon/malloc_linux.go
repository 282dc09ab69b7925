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
//   - fix the mmap threshold at 128 KiB (MALLOC_MMAP_THRESHOLD_, likewise):
//     glibc otherwise raises it each time a large block is freed, up to
//     32 MiB, after which frame-sized buffers (a 720p picture is 2.7 MB)
//     come from the arenas and their holes stay resident; fixed, they are
//     mmapped and unmapped whole;
//   - malloc_trim(0) every minute from the daemon's loop, which returns
//     the free pages of every arena (not only their tops) to the kernel.

// mallocArenas is the arena cap the daemon sets unless MALLOC_ARENA_MAX is
// in its environment.
const mallocArenas = 4

// mmapThreshold is the size from which glibc serves a block by mmap.
const mmapThreshold = 128 << 10

// tuneMalloc caps glibc's arenas and fixes its mmap threshold; it reports
// the settings in force. Tools that searched for the native growth under
// stream churn found no leak in VideoCapture open/close, failed RTSP
// opens or decoder create/free (each ×500–2000, flat): it is arena
// retention, which these two settings bound.
func tuneMalloc() string {
	arenas := strconv.Itoa(mallocArenas)
	if v := os.Getenv("MALLOC_ARENA_MAX"); v != "" {
		arenas = v + " (MALLOC_ARENA_MAX)"
	} else {
		C.mallopt(C.M_ARENA_MAX, C.int(mallocArenas))
	}
	mmap := strconv.Itoa(mmapThreshold)
	if v := os.Getenv("MALLOC_MMAP_THRESHOLD_"); v != "" {
		mmap = v + " (MALLOC_MMAP_THRESHOLD_)"
	} else {
		C.mallopt(C.M_MMAP_THRESHOLD, C.int(mmapThreshold))
	}
	return "arenas " + arenas + ", mmap threshold " + mmap
}

// trimMalloc returns free native memory to the kernel.
func trimMalloc() { C.malloc_trim(0) }

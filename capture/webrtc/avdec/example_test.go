package avdec_test

import (
	"errors"
	"fmt"
	"os"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/capture/webrtc/avdec"
)

// Decode a short H.264 stream (ten 160x96 frames, a key frame every five),
// one access unit at a time, into one reused Mat.
func Example() {
	stream, err := os.ReadFile("testdata/testsrc2_160x96.h264")
	if err != nil {
		fmt.Println(err)
		return
	}
	d, err := avdec.New(avdec.H264, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()
	img := gocv.NewMat() // Decode sizes it at the first picture
	defer img.Close()
	pictures, keys := 0, []int{}
	for i, au := range splitAnnexB(stream) {
		ok, err := d.Decode(au, &img)
		if errors.Is(err, avdec.ErrCorrupt) {
			continue // a frame is lost: ask the sender for a key frame (RTCP PLI)
		} else if err != nil {
			fmt.Println(err)
			return
		}
		if ok { // img holds the picture, as BGR
			pictures++
			if d.KeyFrame() {
				keys = append(keys, i)
			}
		}
	}
	fmt.Printf("%d pictures, %dx%d, key frames at %v\n", pictures, img.Cols(), img.Rows(), keys)
	// Output: 10 pictures, 160x96, key frames at [0 5]
}

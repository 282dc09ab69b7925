//go:build matprofile

package avdec_test

import (
	"image"
	"testing"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/capture/webrtc/avdec"
)

// TestNoMatLeak decodes through every path that allocates or replaces the
// destination Mat (first picture, size change, a Mat of the wrong type, a
// region, errors) and checks with gocv's Mat profile (build tag matprofile)
// that once the caller has closed its Mats and the decoders, no Mat is left.
func TestNoMatLeak(t *testing.T) {
	before := gocv.MatProfile.Count()
	for _, codec := range []avdec.Codec{avdec.H264, avdec.VP8} {
		small, big := makeStream(t, codec, 640, 360), makeStream(t, codec, 1280, 720)
		d, err := avdec.New(codec, 0)
		if err != nil {
			t.Fatal(err)
		}
		dst := gocv.NewMatWithSize(10, 10, gocv.MatTypeCV8UC1) // wrong size and type: replaced
		decode := func(aus [][]byte) {
			for _, au := range aus {
				d.Decode(au, &dst) // errors are expected for the broken data
			}
		}
		decode(small.aus[:30])
		decode(big.aus[:30]) // size change
		decode([][]byte{big.aus[30][:len(big.aus[30])/2], {1, 2, 3}})
		decode(big.aus[31:60])
		// A region of a bigger Mat: not continuous, so replaced.
		parent := gocv.NewMatWithSize(800, 1400, gocv.MatTypeCV8UC3)
		dst.Close()
		dst = parent.Region(image.Rect(0, 0, 1280, 720))
		decode(big.aus[:2])
		parent.Close()
		if during := gocv.MatProfile.Count(); during <= before {
			t.Fatalf("the profile saw no Mats (%d → %d): is the matprofile tag on?", before, during)
		}
		dst.Close()
		d.Close()
		d.Close()
	}
	if after := gocv.MatProfile.Count(); after != before {
		t.Errorf("%d Mats open after Close, %d before", after, before)
	}
}

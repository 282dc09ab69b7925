//go:build matprofile

package iris_test

import (
	"testing"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/track/iris"
)

// TestNoMatLeak: a Fitter makes its Mats once, in New, and frees them in
// Close; Fit makes none (gocv's Mat profile, build tag matprofile).
func TestNoMatLeak(t *testing.T) {
	fx := setup(t)
	fc := fx.photo(t, "astronaut.png")
	before := gocv.MatProfile.Count()
	f, err := iris.New(testenv.RequireORT(t), testenv.HumanModel(t, "iris"))
	if err != nil {
		t.Fatal(err)
	}
	made := gocv.MatProfile.Count()
	for i := 0; i < 10; i++ {
		if _, err := f.Fit(fc.img, &fc.m); err != nil {
			t.Fatal(err)
		}
	}
	if n := gocv.MatProfile.Count(); n != made {
		t.Errorf("%d Mats after 10 fits, %d before", n, made)
	}
	f.Close()
	if after := gocv.MatProfile.Count(); after != before {
		t.Errorf("%d Mats open after Close, %d before New", after, before)
	}
}

package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/affectd/affectd/tools/testmedia"
)

func main() {
	all := flag.Bool("all", false, "make every clip at every size ("+fmt.Sprint(testmedia.Sizes)+")")
	name := flag.String("clip", "", "make this clip (one of: "+fmt.Sprint(testmedia.Names())+")")
	size := flag.String("size", "640x360", "frame size for -clip")
	y4m := flag.Bool("y4m", false, "also convert to .y4m")
	list := flag.Bool("list", false, "list the clips")
	verbose := flag.Bool("v", false, "say how long each clip took to make")
	flag.Parse()
	if *verbose {
		testmedia.GenerateLog = func(c testmedia.Clip, took time.Duration) {
			fmt.Fprintf(os.Stderr, "made %s in %v\n", c.Path, took.Round(time.Millisecond))
		}
	}
	var clips []testmedia.Clip
	switch {
	case *list:
		for _, n := range testmedia.Names() {
			fmt.Printf("%-10s %s\n", n, testmedia.Describe(n))
		}
		return
	case *all:
		var err error
		clips, err = testmedia.EnsureAll()
		if err != nil {
			fail(err)
		}
	case *name != "":
		w, h, err := testmedia.ParseSize(*size)
		if err != nil {
			fail(fmt.Errorf("-%v", err))
		}
		c, err := testmedia.Ensure(*name, w, h)
		if err != nil {
			fail(err)
		}
		clips = append(clips, c)
	default:
		flag.Usage()
		os.Exit(2)
	}
	for _, c := range clips {
		fmt.Println(c.Path)
		fmt.Println(c.TruthPath)
		if *y4m {
			p, err := testmedia.Y4M(c)
			if err != nil {
				fail(err)
			}
			fmt.Println(p)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "testmedia:", err)
	os.Exit(1)
}

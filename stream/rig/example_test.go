package rig_test

import (
	"fmt"
	"net"
	"time"

	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/stream/rig"
)

// An Output sends the largest face of stream cam1 to a Live Link
// receiver, here a UDP socket of our own.
func ExampleOutput() {
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		panic(err)
	}
	defer rx.Close()
	out, err := rig.New(rig.Options{
		Kind: rig.KindLiveLink, Target: rx.LocalAddr().String(), Stream: "cam1",
		Face: rig.FaceLargest, Gain: 1, Subject: "Ana", FPSNum: 25, FPSDen: 1,
	}, &analysis.Layout{BlendShapes: []string{"jawOpen"}})
	if err != nil {
		panic(err)
	}
	defer out.Close()

	// The analyzer calls WriteFrame for every frame.
	_ = out.WriteFrame(&analysis.FrameResult{Stream: "cam1", Seq: 1, CapturedAt: time.Now(), Faces: []analysis.Face{
		{ID: "cam1/1", Box: [4]float32{100, 80, 120, 120}, Blend: []float32{0.5}},
	}})

	buf := make([]byte, 2048)
	_ = rx.SetReadDeadline(time.Now().Add(time.Second))
	n, err := rx.Read(buf)
	if err != nil {
		panic(err)
	}
	fmt.Println("packet:", n, "bytes, version", buf[0])
	st := out.Stats()
	fmt.Println("sent:", st.Packets, "errors:", st.Errors)
	// Output:
	// packet: 285 bytes, version 6
	// sent: 1 errors: 0
}

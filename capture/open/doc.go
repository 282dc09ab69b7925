// Package open turns a stream URL into a capture source:
//
//	file:///path/clip.mp4, /path/clip.mp4   a video file
//	rtsp://host/path, rtsps://…             an RTSP stream
//	v4l2:///dev/video0, v4l2://0, 0         a camera by path or index
//
// whip:// streams are not opened: publishers push them (capture/webrtc).
package open

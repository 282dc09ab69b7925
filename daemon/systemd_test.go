package daemon

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/affectd/affectd/tools/testenv"
)

// TestSystemdUnit: systemd/affectd.service passes `systemd-analyze verify`
// (with ExecStart pointing at a freshly built binary) and its offline
// `systemd-analyze security` exposure stays at "OK" (≤ 2.0).
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze missing: make setup installs Debian's systemd package")
	}
	root, _ := testenv.Root()
	unit, err := os.ReadFile(filepath.Join(root, "systemd", "affectd.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"User=affectd", "AF_NETLINK", "MemoryMax=", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "CapabilityBoundingSet=\n", "DevicePolicy=closed", "DeviceAllow=char-video4linux rw", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "affectd.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/bin/affectd", binary(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=true", "--no-pager", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for affectd.service: ([0-9.]+) (\S+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(m[1], 64)
	t.Logf("systemd-analyze security: exposure %.1f %s", score, m[2])
	if score > 2.0 {
		t.Errorf("exposure %.1f %s, want ≤ 2.0", score, m[2])
	}
}

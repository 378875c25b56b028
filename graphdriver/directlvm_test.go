package graphdriver_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	dm "github.com/thinlayer/thinlayer/devmapper"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/testutil"
)

// hostLVMProfile is where Moby writes the profile; LVM metadata written
// through hostfs would outlive the guest, so the tests keep LVM elsewhere.
const hostLVMProfile = "/etc/lvm/profile/docker-thinpool.profile"

// lvmEnv prepares a direct-lvm test: the LVM tools at hand, and a private
// LVM_SYSTEM_DIR, honoured by the tools and the driver alike, so that no
// profile, backup or archive lands in the host's /etc/lvm. It returns that
// directory.
func lvmEnv(t *testing.T) string {
	t.Helper()
	testutil.RequireKernel(t)
	for _, tool := range []string{"lvcreate", "thin_check"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, fmt.Sprintf("%s missing (apt-get install lvm2 thin-provisioning-tools): %v", tool, err))
		}
	}
	_, err := os.Stat(hostLVMProfile)
	hadProfile := err == nil
	t.Cleanup(func() {
		if _, err := os.Stat(hostLVMProfile); err == nil && !hadProfile {
			t.Errorf("test left %s behind", hostLVMProfile)
		}
	})
	dir := t.TempDir()
	t.Setenv("LVM_SYSTEM_DIR", dir)
	return dir
}

// lvm runs an LVM tool for a cross-check or a cleanup, udev-less where
// udev does not run (as the driver does).
func lvm(argv ...string) (string, error) {
	if !dm.UdevRunning() {
		argv = append([]string{argv[0], "--config",
			"activation{udev_sync=0 udev_rules=0 monitoring=0} devices{obtain_device_list_from_udev=0}"}, argv[1:]...)
	}
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

// lvmDevice is a loop device over a sparse file; at test end, after the
// drivers' Cleanup, the VG "docker" LVM made on it is removed, then the
// loop device detached.
func lvmDevice(t *testing.T) string {
	t.Helper()
	dev := attachSparse(t, 2<<30)
	t.Cleanup(func() {
		if _, err := lvm("vgs", "docker"); err == nil {
			for _, argv := range [][]string{{"lvremove", "-f", "docker"}, {"vgremove", "-f", "docker"}} {
				if out, err := lvm(argv...); err != nil {
					t.Errorf("%v: %v\n%s", argv, err, out)
				}
			}
		}
		if _, err := lvm("pvs", dev); err == nil {
			if out, err := lvm("pvremove", "-ff", "-y", dev); err != nil {
				t.Errorf("pvremove: %v\n%s", err, out)
			}
		}
	})
	return dev
}

// stubLVMTools puts failing stand-ins for the LVM tools first in PATH for
// the rest of t; each logs its call to the returned file.
func stubLVMTools(t *testing.T) string {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	for _, tool := range []string{"lvmdiskscan", "pvdisplay", "pvcreate", "vgcreate", "lvcreate", "lvconvert", "lvchange", "thin_check"} {
		script := "#!/bin/sh\necho \"$0 $*\" >>" + calls + "\nexit 1\n"
		must(t, os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755))
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return calls
}

func readFileString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}

// checkLVMPool checks the driver uses LVM's docker/thinpool, as lvs sees it.
func checkLVMPool(t *testing.T, d gd.Driver) {
	t.Helper()
	if p := statusRow(d, "Pool Name"); p != "docker-thinpool" {
		t.Fatalf("Pool Name = %q", p)
	}
	out, err := lvm("lvs", "--noheadings", "-o", "lv_name,lv_attr,lv_profile", "docker/thinpool")
	if f := strings.Fields(out); err != nil || len(f) != 3 || f[0] != "thinpool" || !strings.HasPrefix(f[1], "twi") || f[2] != "docker-thinpool" {
		t.Fatalf("lvs docker/thinpool: %v\n%s", err, out)
	}
}

func TestDirectLVM(t *testing.T) {
	lvmDir := lvmEnv(t)
	dev := lvmDevice(t)
	home := t.TempDir()
	opts := testOptions("ext4", "dm.directlvm_device="+dev)
	d := newDriver(t, home, opts)
	checkLVMPool(t, d)
	mustCreate(t, d, "a", "")
	writeFile(t, get(t, d, "a")+"/f", "on direct-lvm", 0o644, 0, 0)
	put(t, d, "a")
	must(t, d.Cleanup())
	if ok, err := mustControl(t).Exists("docker-thinpool"); !ok || err != nil {
		t.Fatalf("Cleanup took down LVM's pool (exists=%v err=%v)", ok, err)
	}
	setupFile := filepath.Join(home, "setup-config.json")
	setup := readFileString(t, setupFile)
	if want := `{"Device":"` + dev + `","ThinpPercent":0,"ThinpMetaPercent":0,"AutoExtendPercent":0,"AutoExtendThreshold":0}`; setup != want {
		t.Fatalf("setup-config.json = %s, want Moby's %s", setup, want)
	}
	profile := filepath.Join(lvmDir, "profile", "docker-thinpool.profile")
	if p := readFileString(t, profile); p != "activation{\nthin_pool_autoextend_threshold=80\nthin_pool_autoextend_percent=20\n}" {
		t.Fatalf("profile: %q", p)
	}

	t.Run("reopen", func(t *testing.T) {
		calls := stubLVMTools(t)
		d := newDriver(t, home, opts)
		checkLVMPool(t, d)
		if b := readFileString(t, get(t, d, "a")+"/f"); b != "on direct-lvm" {
			t.Fatalf("after reopen: %q", b)
		}
		put(t, d, "a")
		must(t, d.Cleanup())
		changed := testOptions("ext4", "dm.directlvm_device="+dev, "dm.thinp_percent=90", "dm.thinp_metapercent=1")
		if _, err := gd.Init(home, changed, gd.IdentityMapping{}); err == nil ||
			!strings.Contains(err.Error(), "changing direct-lvm config is not supported") {
			t.Fatalf("Init with another dm.thinp_percent: %v", err)
		}
		if b, err := os.ReadFile(calls); err == nil {
			t.Fatalf("an LVM tool ran on a home already set up:\n%s", b)
		}
	})
	if s := readFileString(t, setupFile); s != setup {
		t.Fatalf("setup-config.json changed: %s", s)
	}
}

func mustControl(t *testing.T) *dm.Control {
	t.Helper()
	c, err := dm.Open()
	must(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDirectLVMRefusesFilesystem(t *testing.T) {
	lvmDir := lvmEnv(t)
	dev := lvmDevice(t)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	home := t.TempDir()
	_, err := gd.Init(home, testOptions("ext4", "dm.directlvm_device="+dev), gd.IdentityMapping{})
	if err == nil || !strings.Contains(err.Error(), dev+" has a filesystem already") ||
		!strings.Contains(err.Error(), "dm.directlvm_device_force=true") {
		t.Fatalf("Init on a device holding ext4: %v", err)
	}
	if out, err := lvm("vgs", "docker"); err == nil {
		t.Fatalf("a refused device got a VG:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(home, "setup-config.json")); !os.IsNotExist(err) {
		t.Fatalf("setup-config.json after a refusal: %v", err)
	}

	// Forced, the filesystem is wiped; the options go to LVM and the file.
	d := newDriver(t, home, testOptions("ext4", "dm.directlvm_device="+dev, "dm.directlvm_device_force=true",
		"dm.thinp_percent=90", "dm.thinp_metapercent=2", "dm.thinp_autoextend_percent=10", "dm.thinp_autoextend_threshold=70"))
	checkLVMPool(t, d)
	mustCreate(t, d, "a", "")
	writeFile(t, get(t, d, "a")+"/f", "forced", 0o644, 0, 0)
	put(t, d, "a")
	want := `{"Device":"` + dev + `","ThinpPercent":90,"ThinpMetaPercent":2,"AutoExtendPercent":10,"AutoExtendThreshold":70}`
	if s := readFileString(t, filepath.Join(home, "setup-config.json")); s != want {
		t.Fatalf("setup-config.json = %s, want %s", s, want)
	}
	if p := readFileString(t, filepath.Join(lvmDir, "profile", "docker-thinpool.profile")); !strings.Contains(p, "threshold=70\nthin_pool_autoextend_percent=10\n") {
		t.Fatalf("profile: %q", p)
	}
}

// With udev running the LVM tools get no udev-less settings and sync with
// udev, which makes the /dev/mapper nodes.
func TestDirectLVMUnderUdev(t *testing.T) {
	lvmEnv(t)
	testutil.StartUdevd(t) // stopped after the VG is gone: LVM waits for it
	dev := lvmDevice(t)
	d := newDriver(t, t.TempDir(), testOptions("ext4", "dm.directlvm_device="+dev))
	checkLVMPool(t, d)
	mustCreate(t, d, "a", "")
	writeFile(t, get(t, d, "a")+"/f", "under udev", 0o644, 0, 0)
	put(t, d, "a")
}

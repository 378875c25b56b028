package lvmpool

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/thinlayer/thinlayer/dmopts"
)

// fakeLVM stands in for the LVM tools: it records each command line and
// answers lvmdiskscan and pvdisplay as told.
type fakeLVM struct {
	calls     [][]string
	diskscan  string // lvmdiskscan's output
	pvdisplay string // pvdisplay's output; "" = fail, as for a device that is no PV
	failTool  string // this tool fails with "boom" on stderr
}

func (f *fakeLVM) exec(argv []string) ([]byte, error) {
	f.calls = append(f.calls, argv)
	switch {
	case argv[0] == f.failTool:
		return nil, &toolError{err: errors.New("exit status 5"), stderr: "boom"}
	case argv[0] == "lvmdiskscan":
		return []byte(f.diskscan), nil
	case argv[0] == "pvdisplay" && f.pvdisplay == "":
		return nil, &toolError{err: errors.New("exit status 5"), stderr: "Failed to find physical volume"}
	case argv[0] == "pvdisplay":
		return []byte(f.pvdisplay), nil
	}
	return nil, nil
}

func (f *fakeLVM) tools() []string {
	var names []string
	for _, c := range f.calls {
		names = append(names, c[0])
	}
	return names
}

// lvmFixture is a home, a blank "device" file LVM's scan lists, and a
// private LVM_SYSTEM_DIR for the profile.
func lvmFixture(t *testing.T, cfg dmopts.DirectLVMConfig) (directLVM, *fakeLVM) {
	t.Helper()
	t.Setenv("LVM_SYSTEM_DIR", t.TempDir())
	dev := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(dev, make([]byte, 128<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	def := dmopts.DefaultConfig().DirectLVM
	if cfg.ThinpPercent == 0 {
		cfg.ThinpPercent, cfg.ThinpMetaPercent = def.ThinpPercent, def.ThinpMetaPercent
	}
	if cfg.AutoExtendPercent == 0 {
		cfg.AutoExtendPercent, cfg.AutoExtendThreshold = def.AutoExtendPercent, def.AutoExtendThreshold
	}
	cfg.Device = dev
	f := &fakeLVM{diskscan: "  " + dev + " [       2.00 GiB] \n  0 disks\n"}
	log := logrus.New()
	log.SetOutput(io.Discard)
	return directLVM{home: t.TempDir(), cfg: cfg, log: logrus.NewEntry(log), exec: f.exec,
		lookPath: func(s string) (string, error) { return "/sbin/" + s, nil }}, f
}

func writeSetupFile(t *testing.T, home, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(home, lvmSetupFile), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDirectLVMFreshSetup(t *testing.T) {
	l, f := lvmFixture(t, dmopts.DirectLVMConfig{})
	pool, err := l.setup()
	if err != nil || pool != "docker-thinpool" {
		t.Fatalf("setup = %q, %v", pool, err)
	}
	want := []string{"lvmdiskscan", "pvdisplay", "pvcreate", "vgcreate", "lvcreate", "lvcreate", "lvconvert", "lvchange"}
	if !reflect.DeepEqual(f.tools(), want) {
		t.Fatalf("ran %v, want %v", f.tools(), want)
	}
	for _, c := range f.calls { // no udev here: every tool is told so
		if c[1] != "--config" || c[2] != lvmUdevless {
			t.Fatalf("%v lacks the udev-less config", c)
		}
	}
	if got := strings.Join(f.calls[7][3:], " "); got != "--metadataprofile docker-thinpool docker/thinpool" {
		t.Fatalf("lvchange args: %s", got)
	}
	// The bytes Moby writes for options left at their defaults.
	b, err := os.ReadFile(filepath.Join(l.home, lvmSetupFile))
	wantJSON := `{"Device":"` + l.cfg.Device + `","ThinpPercent":0,"ThinpMetaPercent":0,"AutoExtendPercent":0,"AutoExtendThreshold":0}`
	if err != nil || string(b) != wantJSON {
		t.Fatalf("setup-config.json = %s (%v), want %s", b, err, wantJSON)
	}
	profile, err := os.ReadFile(filepath.Join(os.Getenv("LVM_SYSTEM_DIR"), "profile", "docker-thinpool.profile"))
	if err != nil || string(profile) != "activation{\nthin_pool_autoextend_threshold=80\nthin_pool_autoextend_percent=20\n}" {
		t.Fatalf("profile = %q, %v", profile, err)
	}
}

func TestDirectLVMCommandArgs(t *testing.T) {
	c := dmopts.DirectLVMConfig{Device: "/dev/xvdf", ThinpPercent: 90, ThinpMetaPercent: 2}
	var got []string
	for _, argv := range lvmCreateCommands(c) {
		got = append(got, strings.Join(argv, " "))
	}
	want := []string{
		"pvcreate -f /dev/xvdf",
		"vgcreate docker /dev/xvdf",
		"lvcreate --wipesignatures y -n thinpool docker --extents 90%VG",
		"lvcreate --wipesignatures y -n thinpoolmeta docker --extents 2%VG",
		"lvconvert -y --zero n -c 512K --thinpool docker/thinpool --poolmetadata docker/thinpoolmeta",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("commands:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if a := lvmArgv(true, []string{"vgcreate", "docker", "/dev/x"}); !reflect.DeepEqual(a, []string{"vgcreate", "docker", "/dev/x"}) {
		t.Fatalf("with udev: %v", a)
	}
	a := lvmArgv(false, []string{"vgcreate", "docker", "/dev/x"})
	if !reflect.DeepEqual(a, []string{"vgcreate", "--config", lvmUdevless, "docker", "/dev/x"}) {
		t.Fatalf("without udev: %v", a)
	}
}

func TestDirectLVMRecognisesEarlierSetup(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  dmopts.DirectLVMConfig
		file string // %s = the device
	}{
		"moby, defaults left out": {dmopts.DirectLVMConfig{}, `{"Device":"%s","ThinpPercent":0,"ThinpMetaPercent":0,"AutoExtendPercent":0,"AutoExtendThreshold":0}`},
		"moby, defaults spelled":  {dmopts.DirectLVMConfig{}, `{"Device":"%s","ThinpPercent":95,"ThinpMetaPercent":1,"AutoExtendPercent":20,"AutoExtendThreshold":80}`},
		"moby, own values":        {dmopts.DirectLVMConfig{ThinpPercent: 90, ThinpMetaPercent: 2, AutoExtendPercent: 10, AutoExtendThreshold: 70}, `{"Device":"%s","ThinpPercent":90,"ThinpMetaPercent":2,"AutoExtendPercent":10,"AutoExtendThreshold":70}`},
		"moby, pretty-printed":    {dmopts.DirectLVMConfig{}, "{\n \"Device\": \"%s\"\n}\n"},
	} {
		t.Run(name, func(t *testing.T) {
			l, f := lvmFixture(t, tc.cfg)
			content := strings.Replace(tc.file, "%s", l.cfg.Device, 1)
			writeSetupFile(t, l.home, content)
			if pool, err := l.setup(); err != nil || pool != "docker-thinpool" {
				t.Fatalf("setup = %q, %v", pool, err)
			}
			if len(f.calls) != 0 {
				t.Fatalf("already set up, yet ran %v", f.tools())
			}
			if b, _ := os.ReadFile(filepath.Join(l.home, lvmSetupFile)); string(b) != content {
				t.Fatalf("setup-config.json rewritten: %s", b)
			}
		})
	}
}

func TestDirectLVMChangedConfig(t *testing.T) {
	for name, file := range map[string]string{
		"percent": `{"Device":"%s","ThinpPercent":90,"ThinpMetaPercent":1,"AutoExtendPercent":0,"AutoExtendThreshold":0}`,
		"device":  `{"Device":"/dev/other","ThinpPercent":0,"ThinpMetaPercent":0,"AutoExtendPercent":0,"AutoExtendThreshold":0}`,
	} {
		t.Run(name, func(t *testing.T) {
			l, f := lvmFixture(t, dmopts.DirectLVMConfig{})
			writeSetupFile(t, l.home, strings.Replace(file, "%s", l.cfg.Device, 1))
			_, err := l.setup()
			if !errors.Is(err, errLVMChanged) || !strings.HasPrefix(err.Error(), "changing direct-lvm config is not supported") {
				t.Fatalf("setup: %v", err)
			}
			if len(f.calls) != 0 {
				t.Fatalf("ran %v", f.tools())
			}
		})
	}
}

func TestDirectLVMRecordOf(t *testing.T) {
	for _, tc := range []struct{ in, want lvmSetup }{
		{lvmSetup{"/d", 95, 1, 20, 80}, lvmSetup{"/d", 0, 0, 0, 0}},
		{lvmSetup{"/d", 95, 2, 20, 70}, lvmSetup{"/d", 95, 2, 0, 70}}, // the thinp pair stays whole
		{lvmSetup{"/d", 50, 1, 30, 80}, lvmSetup{"/d", 50, 1, 30, 0}},
	} {
		in := dmopts.DirectLVMConfig{Device: tc.in.Device, ThinpPercent: tc.in.ThinpPercent, ThinpMetaPercent: tc.in.ThinpMetaPercent,
			AutoExtendPercent: tc.in.AutoExtendPercent, AutoExtendThreshold: tc.in.AutoExtendThreshold}
		if got := recordOf(in); got != tc.want {
			t.Errorf("recordOf(%+v) = %+v, want %+v", tc.in, got, tc.want)
		}
		if recordOf(in).normalized() != tc.in {
			t.Errorf("%+v does not round-trip", tc.in)
		}
	}
}

func TestDirectLVMSetupFileEdgeCases(t *testing.T) {
	home := t.TempDir()
	if s, err := readLVMSetup(home); err != nil || s != (lvmSetup{}) {
		t.Fatalf("missing file: %+v %v", s, err)
	}
	writeSetupFile(t, home, "")
	if s, err := readLVMSetup(home); err != nil || s != (lvmSetup{}) {
		t.Fatalf("empty file: %+v %v", s, err)
	}
	writeSetupFile(t, home, "{not json")
	if _, err := readLVMSetup(home); err == nil || !strings.Contains(err.Error(), "unmarshaling previous device setup config") {
		t.Fatalf("corrupt file: %v", err)
	}
	// Moby reads the file in every mode, and fails on a corrupt one.
	loopback := dmopts.DefaultConfig().DirectLVM
	if _, err := Setup(home, loopback, logrus.New()); err == nil {
		t.Fatal("loopback mode accepted a corrupt setup-config.json")
	}
	if _, err := SetUpBefore(home, loopback); err == nil {
		t.Fatal("a read-only look accepted a corrupt setup-config.json")
	}
	writeSetupFile(t, home, "")
	if pool, err := Setup(home, loopback, logrus.New()); err != nil || pool != "" {
		t.Fatalf("loopback mode: %v, pool %q", err, pool)
	}
}

func TestDirectLVMVerifyDevice(t *testing.T) {
	t.Run("not listed by lvmdiskscan", func(t *testing.T) {
		l, f := lvmFixture(t, dmopts.DirectLVMConfig{})
		f.diskscan = "  /dev/sda [ 10 GiB]\n"
		expectSetupError(t, l, f, "is not available for use with devicemapper")
	})
	t.Run("in a volume group", func(t *testing.T) {
		l, f := lvmFixture(t, dmopts.DirectLVMConfig{})
		f.pvdisplay = "  --- Physical volume ---\n  PV Name               /dev/x\n  VG Name               vg0\n  PV Size               2.00 GiB\n"
		expectSetupError(t, l, f, `already part of a volume group "vg0"`)
	})
	t.Run("signature", func(t *testing.T) {
		l, f := lvmFixture(t, dmopts.DirectLVMConfig{})
		writeAt(t, l.cfg.Device, 4096-10, "SWAPSPACE2")
		expectSetupError(t, l, f, "has a filesystem already (swap), use dm.directlvm_device_force=true")
	})
	t.Run("signature, forced", func(t *testing.T) {
		l, f := lvmFixture(t, dmopts.DirectLVMConfig{AutoForceClean: true})
		writeAt(t, l.cfg.Device, 4096-10, "SWAPSPACE2")
		if _, err := l.setup(); err != nil || len(f.calls) != 8 {
			t.Fatalf("forced setup: %v, ran %v", err, f.tools())
		}
	})
	t.Run("tool fails", func(t *testing.T) {
		l, f := lvmFixture(t, dmopts.DirectLVMConfig{})
		f.failTool = "lvconvert"
		err := expectSetupError(t, l, f, "direct-lvm on "+l.cfg.Device+": lvconvert -y")
		if !strings.Contains(err.Error(), "boom") {
			t.Fatalf("stderr missing: %v", err)
		}
	})
	t.Run("tool missing", func(t *testing.T) {
		l, f := lvmFixture(t, dmopts.DirectLVMConfig{})
		l.lookPath = func(s string) (string, error) {
			if s == "thin_check" {
				return "", exec.ErrNotFound
			}
			return s, nil
		}
		err := expectSetupError(t, l, f, "error looking up command `thin_check`")
		if !errors.Is(err, exec.ErrNotFound) {
			t.Fatalf("not wrapped: %v", err)
		}
	})
}

// expectSetupError runs setup, which must fail with msg and leave no
// setup-config.json.
func expectSetupError(t *testing.T, l directLVM, f *fakeLVM, msg string) error {
	t.Helper()
	_, err := l.setup()
	if err == nil || !strings.Contains(err.Error(), msg) {
		t.Fatalf("setup: %v (ran %v), want %q", err, f.tools(), msg)
	}
	if _, serr := os.Stat(filepath.Join(l.home, lvmSetupFile)); !os.IsNotExist(serr) {
		t.Fatalf("setup-config.json written after a failure: %v", serr)
	}
	return err
}

func writeAt(t *testing.T, path string, off int64, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteAt([]byte(s), off)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestDirectLVMRawSignature(t *testing.T) {
	at := func(off int, s string) []byte {
		b := make([]byte, 64<<10)
		copy(b[off:], s)
		return b
	}
	lvm := at(512, "LABELONE")
	copy(lvm[512+24:], "LVM2 001")
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"blank", make([]byte, 64<<10), ""},
		{"short", []byte("x"), ""},
		{"lvm pv", lvm, "LVM2_member"},
		{"swap 4K", at(4096-10, "SWAPSPACE2"), "swap"},
		{"swap 64K", at(65536-10, "SWAP-SPACE"), "swap"},
		{"gpt", at(512, "EFI PART"), "gpt partition table"},
		{"mbr", at(510, "\x55\xaa"), "dos partition table or boot sector"},
		{"label without LVM2", at(0, "LABELONE"), ""},
	} {
		if got := rawSignature(tc.b); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestDirectLVMFilesystemSignature(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("no mkfs.ext4")
	}
	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v %s", err, out)
	}
	if sig, err := deviceSignature(img); err != nil || sig != "ext4" {
		t.Fatalf("deviceSignature = %q, %v", sig, err)
	}
}

func TestDirectLVMPVDisplayVG(t *testing.T) {
	for out, want := range map[string]string{
		"  --- Physical volume ---\n  PV Name   /dev/x\n  VG Name   docker\n":                            "docker",
		"  --- NEW Physical volume ---\n  PV Name   /dev/x\n  VG Name               \n  PV Size 2 GiB\n": "",
		"": "",
	} {
		if got := pvDisplayVG([]byte(out)); got != want {
			t.Errorf("pvDisplayVG(%q) = %q, want %q", out, got, want)
		}
	}
}

func TestDirectLVMProfileDir(t *testing.T) {
	t.Setenv("LVM_SYSTEM_DIR", "")
	if d := lvmProfileDir(); d != "/etc/lvm/profile" {
		t.Fatalf("default: %s", d)
	}
	t.Setenv("LVM_SYSTEM_DIR", "/srv/lvm")
	if d := lvmProfileDir(); d != "/srv/lvm/profile" {
		t.Fatalf("LVM_SYSTEM_DIR: %s", d)
	}
}

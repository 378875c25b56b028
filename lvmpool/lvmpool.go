// Package lvmpool is Moby's direct-lvm mode (dm.directlvm_device), as
// v24.0.9's device_setup.go: once per home, the LVM tools turn a raw block
// device into the thin pool LV docker/thinpool, and
// <home>/setup-config.json records what was set up. The LVM tools are the
// only programs it runs; deviceset calls Setup before it opens the pool.
package lvmpool

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/dmopts"
	"github.com/thinlayer/thinlayer/fsutil"
	"github.com/thinlayer/thinlayer/internal/recordfile"
)

// Direct-lvm mode (dm.directlvm_device), as Moby v24.0.9's device_setup.go:
// once per home, the LVM tools turn the device into the thin pool LV
// docker/thinpool, and <home>/setup-config.json records what was set up.
// The LVM tools are the only programs run here.
const (
	lvmSetupFile = "setup-config.json"
	// lvmPoolDevice is the device-mapper name LVM gives docker/thinpool.
	lvmPoolDevice = "docker-thinpool"
	// lvmProfile is the metadata profile holding the autoextend settings.
	lvmProfile = "docker-thinpool"
	// lvmUdevless keeps the LVM tools from waiting for a udev that does
	// not run: they would hang on cookies, or miss the nodes they need.
	lvmUdevless = "activation{udev_sync=0 udev_rules=0 monitoring=0} devices{obtain_device_list_from_udev=0}"
)

// lvmRequiredTools are looked up before anything is changed, as Moby does;
// lvconvert needs thin_check to activate the pool.
var lvmRequiredTools = []string{"pvcreate", "vgcreate", "lvcreate", "lvconvert", "lvchange", "thin_check"}

// errLVMChanged is Moby's refusal to set up a home's device a second time.
var errLVMChanged = errors.New("changing direct-lvm config is not supported")

// lvmSetup is setup-config.json: Moby's directLVMConfig, whose field names
// and order are the file format. Moby stores the options as given, 0 for
// one left out.
type lvmSetup struct {
	Device              string
	ThinpPercent        uint64
	ThinpMetaPercent    uint64
	AutoExtendPercent   uint64
	AutoExtendThreshold uint64
}

// lvmDefaults are what Moby's setupDirectLVM uses for options left at 0.
var lvmDefaults = dmopts.DefaultConfig().DirectLVM

// recordOf is what Moby would write for c. c has the defaults filled in,
// so a default value is taken as left out (Moby's 0); the thinp pair is
// given together or not at all, so both are kept when either differs.
func recordOf(c dmopts.DirectLVMConfig) lvmSetup {
	s := lvmSetup{Device: c.Device, ThinpPercent: c.ThinpPercent, ThinpMetaPercent: c.ThinpMetaPercent,
		AutoExtendPercent: c.AutoExtendPercent, AutoExtendThreshold: c.AutoExtendThreshold}
	if s.ThinpPercent == lvmDefaults.ThinpPercent && s.ThinpMetaPercent == lvmDefaults.ThinpMetaPercent {
		s.ThinpPercent, s.ThinpMetaPercent = 0, 0
	}
	if s.AutoExtendPercent == lvmDefaults.AutoExtendPercent {
		s.AutoExtendPercent = 0
	}
	if s.AutoExtendThreshold == lvmDefaults.AutoExtendThreshold {
		s.AutoExtendThreshold = 0
	}
	return s
}

// normalized fills in the defaults, so that records differing only in
// whether a default was spelled out compare equal.
func (s lvmSetup) normalized() lvmSetup {
	def := func(v *uint64, d uint64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&s.ThinpPercent, lvmDefaults.ThinpPercent)
	def(&s.ThinpMetaPercent, lvmDefaults.ThinpMetaPercent)
	def(&s.AutoExtendPercent, lvmDefaults.AutoExtendPercent)
	def(&s.AutoExtendThreshold, lvmDefaults.AutoExtendThreshold)
	return s
}

// readLVMSetup is Moby's readLVMConfig: a missing or empty file is no setup.
func readLVMSetup(home string) (lvmSetup, error) {
	var s lvmSetup
	b, err := recordfile.Read(filepath.Join(home, lvmSetupFile), maxSetupSize)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(b) == 0) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("error reading existing setup config: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return lvmSetup{}, fmt.Errorf("error unmarshaling previous device setup config %s: %w", filepath.Join(home, lvmSetupFile), err)
	}
	return s, nil
}

// writeLVMSetup writes Moby's bytes (json.Marshal, mode 0600), atomically.
func writeLVMSetup(home string, s lvmSetup) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return recordfile.Write(home, lvmSetupFile, b)
}

// maxSetupSize bounds setup-config.json: five fields.
const maxSetupSize = 64 << 10

// PoolDevice is the device-mapper name of the pool LVM makes.
const PoolDevice = lvmPoolDevice

// Setup runs direct-lvm mode's setup when cfg names a device, as Moby's
// initDevmapper does, and returns the pool's device-mapper name ("" when
// direct-lvm mode is off). A home set up before is checked, not set up
// again.
func Setup(home string, cfg dmopts.DirectLVMConfig, log logrus.FieldLogger) (pool string, err error) {
	l := directLVM{home: home, cfg: cfg, log: log, udev: dm.UdevRunning(), exec: execTool, lookPath: exec.LookPath}
	return l.setup()
}

// SetUpBefore reports the pool's device-mapper name when the home was set
// up before or cfg asks for direct-lvm mode, without running anything: for
// a read-only look.
func SetUpBefore(home string, cfg dmopts.DirectLVMConfig) (pool string, err error) {
	prev, err := readLVMSetup(home)
	if err == nil && (prev.Device != "" || cfg.Device != "") {
		return lvmPoolDevice, nil
	}
	return "", err
}

// directLVM sets up one home's LVM thin pool.
type directLVM struct {
	home string
	cfg  dmopts.DirectLVMConfig
	log  logrus.FieldLogger
	udev bool // udev runs: the LVM tools may rely on it
	// exec runs a program and returns its stdout; its error carries stderr.
	exec     func(argv []string) ([]byte, error)
	lookPath func(string) (string, error)
}

// setup returns the pool's device-mapper name, or "" outside direct-lvm
// mode. Like Moby it reads setup-config.json in every mode.
func (l directLVM) setup() (string, error) {
	prev, err := readLVMSetup(l.home)
	if err != nil || l.cfg.Device == "" {
		return "", err
	}
	cur := recordOf(l.cfg)
	if prev.normalized() == cur.normalized() {
		return lvmPoolDevice, nil // set up before, by Moby or by us
	}
	if prev != (lvmSetup{}) {
		return "", fmt.Errorf("%w: %s has %+v, the options give %+v", errLVMChanged,
			filepath.Join(l.home, lvmSetupFile), prev, cur)
	}
	l.log.WithField("direct-lvm-config", cur).Debug("Setting up direct lvm mode")
	if err := l.verifyDevice(); err != nil {
		return "", err
	}
	if err := l.createPool(); err != nil {
		return "", err
	}
	if err := writeLVMSetup(l.home, cur); err != nil {
		return "", fmt.Errorf("error writing direct lvm config to file: %w", err)
	}
	return lvmPoolDevice, nil
}

// verifyDevice is Moby's verifyBlockDevice: the device must be one LVM
// can see, in no volume group, and (unless forced) without a signature.
func (l directLVM) verifyDevice() error {
	dev := l.cfg.Device
	if out, ok := l.optionalTool("lvmdiskscan"); ok && !bytes.Contains(out, []byte(dev)) {
		return fmt.Errorf("%s is not available for use with devicemapper", dev)
	}
	if out, ok := l.optionalTool("pvdisplay", dev); ok {
		if vg := pvDisplayVG(out); vg != "" {
			return fmt.Errorf("%s is already part of a volume group %q: must remove this device from any volume group or provide a different device", dev, vg)
		}
	}
	if l.cfg.AutoForceClean {
		return nil
	}
	sig, err := deviceSignature(dev)
	if err != nil {
		return fmt.Errorf("direct-lvm device %s: %w", dev, err)
	}
	if sig != "" {
		return fmt.Errorf("%s has a filesystem already (%s), use dm.directlvm_device_force=true if you want to wipe the device", dev, sig)
	}
	return nil
}

// optionalTool runs a check Moby skips when the tool is missing or fails
// (pvdisplay fails on a device that is no PV, the usual case).
func (l directLVM) optionalTool(argv ...string) ([]byte, bool) {
	if _, err := l.lookPath(argv[0]); err != nil {
		l.log.Debugf("could not find %s", argv[0])
		return nil, false
	}
	out, err := l.tool(argv...)
	if err != nil {
		l.log.WithError(err).Debugf("%s failed, check skipped", argv[0])
		return nil, false
	}
	return out, true
}

// pvDisplayVG is the "VG Name" pvdisplay prints, "" for a PV in no VG.
func pvDisplayVG(out []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "VG Name"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// createPool is Moby's setupDirectLVM: PV, VG "docker", the data and
// metadata LVs, their conversion to a thin pool, the autoextend profile.
func (l directLVM) createPool() error {
	for _, bin := range lvmRequiredTools {
		if _, err := l.lookPath(bin); err != nil {
			return fmt.Errorf("error looking up command `%s` while setting up direct lvm: %w", bin, err)
		}
	}
	c := l.cfg
	dir := lvmProfileDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("error creating lvm profile directory: %w", err)
	}
	for _, argv := range lvmCreateCommands(c) {
		if _, err := l.tool(argv...); err != nil {
			return err
		}
	}
	profile := lvmProfileText(c.AutoExtendThreshold, c.AutoExtendPercent)
	if err := os.WriteFile(filepath.Join(dir, lvmProfile+".profile"), []byte(profile), 0o600); err != nil {
		return fmt.Errorf("error writing docker thinp autoextend profile: %w", err)
	}
	_, err := l.tool("lvchange", "--metadataprofile", lvmProfile, "docker/thinpool")
	return err
}

// lvmCreateCommands are Moby's commands up to the thin pool, for c with
// its defaults filled in.
func lvmCreateCommands(c dmopts.DirectLVMConfig) [][]string {
	lv := func(name string, percent uint64) []string {
		return []string{"lvcreate", "--wipesignatures", "y", "-n", name, "docker", "--extents", fmt.Sprintf("%d%%VG", percent)}
	}
	return [][]string{
		{"pvcreate", "-f", c.Device},
		{"vgcreate", "docker", c.Device},
		lv("thinpool", c.ThinpPercent),
		lv("thinpoolmeta", c.ThinpMetaPercent),
		{"lvconvert", "-y", "--zero", "n", "-c", "512K", "--thinpool", "docker/thinpool", "--poolmetadata", "docker/thinpoolmeta"},
	}
}

// lvmProfileText is Moby's profile, byte for byte.
func lvmProfileText(threshold, percent uint64) string {
	return fmt.Sprintf("activation{\nthin_pool_autoextend_threshold=%d\nthin_pool_autoextend_percent=%d\n}", threshold, percent)
}

// lvmProfileDir is where the LVM tools look for profiles: under
// LVM_SYSTEM_DIR when set (Moby always writes /etc/lvm/profile, which
// lvchange then would not read).
func lvmProfileDir() string {
	sys := os.Getenv("LVM_SYSTEM_DIR")
	if sys == "" {
		sys = "/etc/lvm"
	}
	return filepath.Join(sys, "profile")
}

// lvmArgv puts the udev-less settings after the tool's name where needed.
func lvmArgv(udev bool, argv []string) []string {
	if udev {
		return argv
	}
	return append([]string{argv[0], "--config", lvmUdevless}, argv[1:]...)
}

// tool runs one LVM tool and names the device and the tool's stderr when
// it fails.
func (l directLVM) tool(argv ...string) ([]byte, error) {
	full := lvmArgv(l.udev, argv)
	l.log.WithFields(logrus.Fields{"device": l.cfg.Device, "command": full}).Debug("direct-lvm: running")
	out, err := l.exec(full)
	if err != nil {
		return out, fmt.Errorf("direct-lvm on %s: %s: %w", l.cfg.Device, strings.Join(argv, " "), err)
	}
	return out, nil
}

// toolError is a program's failure with what it said on stderr.
type toolError struct {
	err    error
	stderr string
}

func (e *toolError) Error() string { return fmt.Sprintf("%v: %s", e.err, e.stderr) }
func (e *toolError) Unwrap() error { return e.err }

// execTool runs argv with the caller's environment (LVM_SYSTEM_DIR and
// all) and no stdin, and returns its stdout.
func execTool(argv []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &toolError{err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.Bytes(), nil
}

// deviceSignature names what blkid would report as the TYPE of dev (and
// Moby then refuses): a filesystem, an LVM PV label, swap; or a partition
// table, which LVM would refuse later on. "" means none.
func deviceSignature(dev string) (string, error) {
	info, err := fsutil.ProbeDevice(dev)
	if err == nil {
		return info.Type, nil
	}
	if !errors.Is(err, fsutil.ErrNoFilesystem) {
		return "", err
	}
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 64<<10) // swap's signature ends its first page, up to 64K
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	return rawSignature(head[:n]), nil
}

// rawSignature finds the signatures fsutil does not probe for in the
// first bytes of a device.
func rawSignature(b []byte) string {
	at := func(off int, magic string) bool {
		return len(b) >= off+len(magic) && string(b[off:off+len(magic)]) == magic
	}
	for sector := 0; sector < 4; sector++ { // LVM's label lies in one of the first 4 sectors
		if at(sector*512, "LABELONE") && at(sector*512+24, "LVM2 001") {
			return "LVM2_member"
		}
	}
	for _, page := range []int{4 << 10, 8 << 10, 16 << 10, 64 << 10} {
		if at(page-10, "SWAPSPACE2") || at(page-10, "SWAP-SPACE") {
			return "swap"
		}
	}
	if at(512, "EFI PART") || at(4096, "EFI PART") {
		return "gpt partition table"
	}
	if at(510, "\x55\xaa") {
		return "dos partition table or boot sector"
	}
	return ""
}

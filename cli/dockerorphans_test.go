package cli

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestDockerDriverOf(t *testing.T) {
	root := t.TempDir()
	if _, err := dockerDriverOf(root, ""); !errors.Is(err, ErrUsage) {
		t.Errorf("no image store: %v, want ErrUsage", err)
	}
	if d, err := dockerDriverOf(root, "other"); err != nil || d != "other" {
		t.Errorf("given: %q %v", d, err)
	}
	if _, err := dockerDriverOf(root, "../containers"); !errors.Is(err, ErrUsage) {
		t.Errorf("a --name that climbs out of image/: %v, want ErrUsage", err)
	}
	for i, d := range []string{DockerBuiltinDriver, DefaultPluginName} {
		if err := os.MkdirAll(filepath.Join(root, "image", d), 0o700); err != nil {
			t.Fatal(err)
		}
		got, err := dockerDriverOf(root, "")
		if i == 0 && (err != nil || got != DockerBuiltinDriver) {
			t.Errorf("only image/devicemapper: %q %v", got, err)
		}
		if i == 1 && !errors.Is(err, ErrUsage) {
			t.Errorf("both image stores: %q %v, want ErrUsage", got, err)
		}
	}
}

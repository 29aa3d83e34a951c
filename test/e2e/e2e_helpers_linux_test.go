//go:build linux

package e2e

import (
	"context"
	"os/exec"
)

func execCommand(ctx context.Context, argv ...string) (string, error) {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

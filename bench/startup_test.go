package bench

import (
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkDevStartup: from starting `perund dev` until /healthz is 200
// (embedded chain, contracts deployed, demo users' sessions open).
func BenchmarkDevStartup(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "perund")
	build := exec.Command("go", "build", "-o", bin, "./cmd/perund")
	build.Dir = ".."
	out, err := build.CombinedOutput()
	require.NoError(b, err, string(out))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(b, err)
		addr := l.Addr().String()
		l.Close()
		cmd := exec.Command(bin, "dev", "--listen", addr, "--data-dir", b.TempDir())
		cmd.Stdout, cmd.Stderr = nil, nil
		b.StartTimer()
		require.NoError(b, cmd.Start())
		for {
			resp, err := http.Get(fmt.Sprintf("http://%s/healthz", addr))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.StopTimer()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		b.StartTimer()
	}
}

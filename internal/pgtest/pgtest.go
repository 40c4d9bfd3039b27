// Package pgtest starts a throw-away PostgreSQL cluster for a test
// binary, for the tests that run on perund's PostgreSQL store. It is apart
// from perundtest, whose imports register perun-eth-backend's wallet and
// channel backends: the store's tests run on go-perun's sim backend.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a throw-away PostgreSQL cluster for one test binary.
// It starts on the first Database call (a binary whose tests need none
// starts none): initdb and the postgres server from Debian's
// /usr/lib/postgresql/<version>/bin (or PATH), in a temporary directory, on
// a free port of 127.0.0.1 with its socket in that directory, fsync off
// (unless FsyncEnv says on).
// Run as root, both run as the user nobody (initdb refuses root). The
// server is a child of the test binary that gets SIGQUIT if the binary
// dies, so a test binary killed by its timeout leaves no server behind.
//
// A test package declares one cluster and stops it in TestMain:
//
//	var pg = pgtest.NewCluster()
//	func TestMain(m *testing.M) { leaktest.VerifyTestMain(m, pg.Stop) }
type Cluster struct {
	once  sync.Once
	start error  // why the cluster did not start
	skip  string // why PostgreSQL is not available (no binaries)

	dir  string
	lock *os.File // flock held while the cluster's directory is in use
	port int
	done chan struct{} // closed when the server exited
	stop chan struct{} // closed by Stop

	dbs     atomic.Int64
	skipped atomic.Int64
}

// NewCluster returns a cluster that starts on first use.
func NewCluster() *Cluster {
	return &Cluster{stop: make(chan struct{})}
}

// Database creates a new, empty database in the cluster and returns its
// URL. Without PostgreSQL binaries the test is skipped with the reason,
// unless the environment variable CI is set: there it fails.
func (c *Cluster) Database(t testing.TB) string {
	t.Helper()
	c.once.Do(c.run)
	if c.skip != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL is required when CI is set: %s", c.skip)
		}
		c.skipped.Add(1)
		t.Skipf("SKIP: PostgreSQL not available, this backend is not tested: %s", c.skip)
	}
	if c.start != nil {
		t.Fatalf("start the PostgreSQL test cluster: %v", c.start)
	}
	name := fmt.Sprintf("test_%d", c.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	if err != nil {
		t.Fatalf("connect to the PostgreSQL test cluster: %v", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	return c.url(name)
}

// url is the URL of database db (trust authentication: no password).
func (c *Cluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// Stop stops the server and removes its directory; it reports on stderr
// how many tests skipped PostgreSQL. It may be called when the cluster
// never started.
func (c *Cluster) Stop() {
	c.once.Do(func() { c.skip = "the cluster was stopped" })
	if n := c.skipped.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "\n*** %d PostgreSQL test(s) SKIPPED: %s ***\n\n", n, c.skip)
	}
	if c.done == nil {
		return
	}
	close(c.stop)
	<-c.done
	_ = os.RemoveAll(c.dir)
	_ = c.lock.Close()
}

// dirPrefix names the clusters' directories in the temp dir.
const dirPrefix = "perund-pg-"

// removeStale removes the directories that test binaries which died left
// behind: those whose lock no process holds (a lock dies with its
// process), and those without a lock file older than an hour.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		f, err := os.Open(filepath.Join(d, "lock"))
		if err != nil {
			if fi, serr := os.Stat(d); serr == nil && time.Since(fi.ModTime()) > time.Hour {
				_ = os.RemoveAll(d)
			}
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			_ = os.RemoveAll(d)
		}
		_ = f.Close()
	}
}

// postgresBin returns the directory of initdb and postgres.
func postgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest major version first.
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no initdb in /usr/lib/postgresql/*/bin or on PATH (install Debian's postgresql package; scripts/test does)")
}

// run starts the cluster once.
func (c *Cluster) run() {
	bin, err := postgresBin()
	if err != nil {
		c.skip = err.Error()
		return
	}
	if c.start = c.initdb(bin); c.start != nil {
		c.cleanup()
		return
	}
	// A port picked free can be taken before the server binds it: retry.
	for range 3 {
		if c.start = c.serve(bin); c.start == nil {
			return
		}
	}
	c.cleanup()
}

// cleanup removes the cluster's directory after a failed start.
func (c *Cluster) cleanup() {
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
	if c.lock != nil {
		_ = c.lock.Close()
	}
}

// credential returns who runs PostgreSQL: nobody when the tests run as
// root, else the current user (nil).
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs an unprivileged user: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid of nobody: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid of nobody: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// command returns bin/name with args, run as cred, with a plain
// environment and its output appended to the cluster's log.
func (c *Cluster) command(bin, name string, cred *syscall.Credential, args ...string) (*exec.Cmd, *os.File, error) {
	log, err := os.OpenFile(filepath.Join(c.dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o666)
	if err != nil {
		return nil, nil, fmt.Errorf("open log: %w", err)
	}
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LANG=C", "LC_ALL=C", "HOME=" + c.dir, "TZ=UTC"}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd, log, nil
}

// initdb creates the cluster's directory and data directory.
func (c *Cluster) initdb(bin string) error {
	cred, err := credential()
	if err != nil {
		return err
	}
	removeStale()
	if c.dir, err = os.MkdirTemp("", dirPrefix); err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	if c.lock, err = os.Create(filepath.Join(c.dir, "lock")); err != nil {
		return fmt.Errorf("lock file: %w", err)
	}
	if err := syscall.Flock(int(c.lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("lock %s: %w", c.dir, err)
	}
	if cred != nil {
		if err := os.Chown(c.dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("hand %s to nobody: %w", c.dir, err)
		}
	}
	cmd, log, err := c.command(bin, "initdb", cred, "-D", filepath.Join(c.dir, "data"),
		"-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
	if err != nil {
		return err
	}
	defer log.Close()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, c.logTail())
	}
	return nil
}

// serve starts the server on a free port and waits until it accepts
// connections.
func (c *Cluster) serve(bin string) error {
	cred, err := credential()
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("free port: %w", err)
	}
	c.port = l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	cmd, log, err := c.command(bin, "postgres", cred, "-D", filepath.Join(c.dir, "data"),
		"-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+c.dir,
		"-c", "fsync="+fsync(), "-c", "full_page_writes="+fsync(),
		"-c", "max_connections=300", "-c", "shared_buffers=32MB")
	if err != nil {
		return err
	}
	// SIGQUIT (immediate shutdown) if the thread that started the server
	// ends, which is when the test binary dies: the goroutine below keeps
	// its thread locked and alive until the server exited.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer log.Close()
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited := make(chan struct{})
		go func() {
			select {
			case <-c.stop:
				_ = cmd.Process.Signal(syscall.SIGINT) // fast shutdown
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
				}
			case <-exited:
			}
		}()
		_ = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		<-done
		return fmt.Errorf("start postgres: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			c.done = done
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("postgres exited: %w\n%s", err, c.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("postgres did not accept connections in 30 s: %w\n%s", err, c.logTail())
		}
	}
}

// FsyncEnv set to "on" makes the cluster fsync its commits as a
// production server does (for benchmarks of durable commits); by default
// it does not, for speed.
const FsyncEnv = "PERUND_PGTEST_FSYNC"

// fsync is the server's fsync setting.
func fsync() string {
	if os.Getenv(FsyncEnv) == "on" {
		return "on"
	}
	return "off"
}

// logTail returns the end of the cluster's log.
func (c *Cluster) logTail() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "log"))
	s := string(b)
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return strings.TrimSpace(s)
}

package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// errStopping is the cause of a task group's context once it stops.
var errStopping = errors.New("shutting down")

// taskGroup owns background goroutines: every task runs with the group's
// context, and stop cancels that context and waits for all of them. A
// session's group is a child of the node's, so closing the node cancels the
// tasks of every session at once.
type taskGroup struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	log    *slog.Logger

	mu      sync.Mutex
	stopped bool
	running map[string]int // tasks by name, for the log of a stop that timed out
	wg      sync.WaitGroup
}

func newTaskGroup(parent context.Context, log *slog.Logger) *taskGroup {
	ctx, cancel := context.WithCancelCause(parent)
	return &taskGroup{ctx: ctx, cancel: cancel, log: log, running: map[string]int{}}
}

// goTask runs fn in a goroutine owned by the group. fn must return soon
// after ctx ends. Once the group is stopping no new task starts: goTask
// then reports false and fn never runs.
func (g *taskGroup) goTask(name string, fn func(ctx context.Context)) bool {
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		g.log.Debug("task not started: shutting down", "task", name)
		return false
	}
	g.running[name]++
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer func() {
			g.mu.Lock()
			if g.running[name]--; g.running[name] == 0 {
				delete(g.running, name)
			}
			g.mu.Unlock()
			g.wg.Done()
		}()
		fn(g.ctx)
	}()
	return true
}

// cancelTasks refuses new tasks and cancels the context of the running ones
// without waiting for them.
func (g *taskGroup) cancelTasks() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.cancel(errStopping)
}

// wait waits until every task has returned or ctx ends; it names the tasks
// still running then.
func (g *taskGroup) wait(ctx context.Context) error {
	if err := waitCtx(ctx, &g.wg); err != nil {
		return fmt.Errorf("background tasks still running (%s): %w", g.names(), err)
	}
	return nil
}

// waitCtx waits for wg until ctx ends. The helper goroutine that waits
// outlives a ctx that ended only as long as wg's goroutines do.
func waitCtx(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop cancels the tasks and waits for them until ctx ends.
func (g *taskGroup) stop(ctx context.Context) error {
	g.cancelTasks()
	return g.wait(ctx)
}

func (g *taskGroup) names() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	list := make([]string, 0, len(g.running))
	for n, c := range g.running {
		list = append(list, fmt.Sprintf("%s×%d", n, c))
	}
	sort.Strings(list)
	return strings.Join(list, ", ")
}

// backoff is an exponential retry delay: first, doubled per attempt
// (counted from 0), at most limit.
type backoff struct {
	first, limit time.Duration
}

func (b backoff) delay(attempt int) time.Duration {
	d := b.first
	for i := 0; i < attempt && d < b.limit; i++ {
		d *= 2
	}
	return min(d, b.limit)
}

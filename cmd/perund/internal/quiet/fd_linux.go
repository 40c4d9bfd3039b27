package quiet

import "golang.org/x/sys/unix"

// swap points fd 1 at fd and returns a copy of the old fd 1.
func swap(fd int) int {
	old, err := unix.Dup(1)
	if err != nil {
		return -1
	}
	if err := unix.Dup3(fd, 1, 0); err != nil {
		unix.Close(old)
		return -1
	}
	return old
}

func restore(old int) {
	if old < 0 {
		return
	}
	_ = unix.Dup3(old, 1, 0)
	unix.Close(old)
}

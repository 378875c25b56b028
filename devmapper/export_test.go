package devmapper

import "time"

// PendingCookieValues returns the semaphore values of c's pending cookies,
// oldest first: 1 while udev has not completed one, 0 once it has.
func PendingCookieValues(c *Control) []int {
	c.jar.mu.Lock()
	defer c.jar.mu.Unlock()
	vals := make([]int, 0, len(c.jar.pending))
	for _, ck := range c.jar.pending {
		v, err := ck.value()
		if err != nil {
			v = -1
		}
		vals = append(vals, v)
	}
	return vals
}

// WaitPendingCookies waits (at most timeout each) for udev to complete c's
// pending cookies, without destroying them.
func WaitPendingCookies(c *Control, timeout time.Duration) error {
	c.jar.mu.Lock()
	cks := append([]*cookie(nil), c.jar.pending...)
	c.jar.mu.Unlock()
	for _, ck := range cks {
		if err := ck.semop(0, timeout); err != nil {
			return err
		}
	}
	return nil
}

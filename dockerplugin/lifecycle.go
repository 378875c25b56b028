package dockerplugin

import (
	"net/http"

	"github.com/sirupsen/logrus"
)

// init opens the driver on Docker's home (or Config.Home). A second Init —
// dockerd restarted without a Cleanup, say after a kill — first cleans the
// running driver up, as a new daemon process would find it.
func (h *Handler) init(w http.ResponseWriter, r *http.Request) {
	var q initRequest
	if err := decode(r, &q); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	home := q.Home
	if h.cfg.Home != "" {
		home = h.cfg.Home
	}
	opts := append(append([]string(nil), h.cfg.Options...), q.Opts...)
	l := h.cfg.Logger.WithFields(logrus.Fields{"home": home, "options": opts})
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.cleanupLocked(); err != nil {
		l.WithError(err).Warn("dockerplugin: cleanup of the previous driver before Init")
	}
	d, err := h.cfg.Init(home, opts, toMapping(q.UIDMaps, q.GIDMaps))
	if err != nil {
		l.WithError(err).Error("dockerplugin: Init")
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	h.driver = d
	l.Info("dockerplugin: driver ready")
	writeJSON(w, http.StatusOK, response{})
}

func (h *Handler) cleanup(w http.ResponseWriter, _ *http.Request) {
	if err := h.Cleanup(); err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, response{})
}

// Cleanup releases the driver (unmounts, deactivates, takes the pool down)
// after the calls in flight; the next Init opens it again.
func (h *Handler) Cleanup() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cleanupLocked()
}

func (h *Handler) cleanupLocked() error {
	if h.driver == nil {
		return nil
	}
	err := h.driver.Cleanup()
	h.driver = nil
	h.cfg.Logger.WithError(err).Info("dockerplugin: driver cleaned up")
	return err
}

package dockerplugin

import (
	"io"
	"net/http"
)

// diff streams the layer's tar as the response body. A failure after the
// first byte aborts the connection, so Docker sees a broken stream rather
// than a short tar that ends cleanly.
func (h *Handler) diff(w http.ResponseWriter, r *http.Request) {
	var q request
	if err := decode(r, &q); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	h.log("Diff", q).Debug("dockerplugin: call")
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.driver == nil {
		writeErr(w, http.StatusInternalServerError, ErrNotInitialized)
		return
	}
	rc, err := h.driver.Diff(q.ID, q.Parent)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		h.log("Diff", q).WithError(err).Warn("dockerplugin: diff stream broken")
		panic(http.ErrAbortHandler)
	}
}

// applyDiff applies the tar in the request body; id and parent come in
// the query, as Docker's client puts them there.
func (h *Handler) applyDiff(w http.ResponseWriter, r *http.Request) {
	q := request{ID: r.URL.Query().Get("id"), Parent: r.URL.Query().Get("parent")}
	h.log("ApplyDiff", q).Debug("dockerplugin: call")
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.driver == nil {
		writeErr(w, http.StatusInternalServerError, ErrNotInitialized)
		return
	}
	n, err := h.driver.ApplyDiff(q.ID, q.Parent, r.Body)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, response{Size: n})
}

package dockerplugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/thinlayer/thinlayer/graphdriver"
)

// InitFunc opens a driver on a home; graphdriver.Open is the default.
type InitFunc func(home string, opts []string, idMap graphdriver.IdentityMapping) (graphdriver.Driver, error)

// Config says which home to serve and how.
type Config struct {
	// Home, when set, is served whatever home Docker's Init names.
	Home string
	// Options are dm.* options put before the --storage-opt Docker sends,
	// so Docker's win where both name one.
	Options []string
	// Init opens the driver; nil means graphdriver.Open with Logger.
	Init InitFunc
	// Logger gets a debug line per request; nil means logrus's standard one.
	Logger logrus.FieldLogger
}

// ErrNotInitialized answers any driver call before /GraphDriver.Init. A
// dockerd calls Init once, when it starts: a plugin restarted under a
// running dockerd gets calls and no Init, and the user sees this text.
var ErrNotInitialized = errors.New("dockerplugin: GraphDriver.Init has not been called: restart dockerd (this plugin process started after it)")

// Handler serves the graphdriver plugin protocol over one driver.
type Handler struct {
	cfg Config
	mux *http.ServeMux

	// mu is write-held by Init and Cleanup, which replace driver, and
	// read-held by every other call for as long as it uses the driver
	// (a Diff until its stream ends), so Cleanup never pulls a layer's
	// device from under a call.
	mu     sync.RWMutex
	driver graphdriver.Driver // guarded by mu
}

// NewHandler returns the protocol's handler; Docker's Init opens the driver.
func NewHandler(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = logrus.StandardLogger()
	}
	if cfg.Init == nil {
		log := cfg.Logger
		cfg.Init = func(home string, opts []string, idMap graphdriver.IdentityMapping) (graphdriver.Driver, error) {
			return graphdriver.Open(home, opts, idMap, log)
		}
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
	h.routes()
	return h
}

// ServeHTTP logs, at debug level, the time each request spent in the
// plugin (decoding, the driver's work, the response): set against the
// engine's wall time it bounds what the HTTP hop costs.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h.mux.ServeHTTP(w, r)
	h.cfg.Logger.WithFields(logrus.Fields{"path": r.URL.Path, "ns": time.Since(start).Nanoseconds()}).Debug("dockerplugin: served")
}

func (h *Handler) routes() {
	h.mux.HandleFunc("POST /Plugin.Activate", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, activateResponse{Implements: []string{"GraphDriver"}})
	})
	h.mux.HandleFunc("POST /GraphDriver.Init", h.init)
	h.mux.HandleFunc("POST /GraphDriver.Cleanup", h.cleanup)
	h.mux.HandleFunc("POST /GraphDriver.Capabilities", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, response{Capabilities: &capabilities{}})
	})
	h.call("Create", func(d graphdriver.Driver, q request) (response, error) {
		return response{}, d.Create(q.ID, q.Parent, createOpts(q))
	})
	h.call("CreateReadWrite", func(d graphdriver.Driver, q request) (response, error) {
		return response{}, d.CreateReadWrite(q.ID, q.Parent, createOpts(q))
	})
	h.call("Remove", func(d graphdriver.Driver, q request) (response, error) {
		return response{}, d.Remove(q.ID)
	})
	h.call("Get", func(d graphdriver.Driver, q request) (response, error) {
		dir, err := d.Get(q.ID, q.MountLabel)
		return response{Dir: dir}, err
	})
	h.call("Put", func(d graphdriver.Driver, q request) (response, error) {
		return response{}, d.Put(q.ID)
	})
	h.call("Exists", func(d graphdriver.Driver, q request) (response, error) {
		return response{Exists: d.Exists(q.ID)}, nil
	})
	h.call("Status", func(d graphdriver.Driver, _ request) (response, error) {
		return response{Status: d.Status()}, nil
	})
	h.call("GetMetadata", func(d graphdriver.Driver, q request) (response, error) {
		m, err := d.GetMetadata(q.ID)
		return response{Metadata: m}, err
	})
	h.call("Changes", func(d graphdriver.Driver, q request) (response, error) {
		c, err := d.Changes(q.ID, q.Parent)
		return response{Changes: c}, err
	})
	h.call("DiffSize", func(d graphdriver.Driver, q request) (response, error) {
		n, err := d.DiffSize(q.ID, q.Parent)
		return response{Size: n}, err
	})
	h.mux.HandleFunc("POST /GraphDriver.Diff", h.diff)
	h.mux.HandleFunc("POST /GraphDriver.ApplyDiff", h.applyDiff)
}

func createOpts(q request) *graphdriver.CreateOpts {
	return &graphdriver.CreateOpts{MountLabel: q.MountLabel, StorageOpt: q.StorageOpt}
}

// call routes /GraphDriver.<method>: a JSON request in, a JSON response out.
func (h *Handler) call(method string, f func(graphdriver.Driver, request) (response, error)) {
	h.mux.HandleFunc("POST /GraphDriver."+method, func(w http.ResponseWriter, r *http.Request) {
		var q request
		if err := decode(r, &q); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		h.log(method, q).Debug("dockerplugin: call")
		h.mu.RLock()
		defer h.mu.RUnlock()
		if h.driver == nil {
			writeErr(w, http.StatusInternalServerError, ErrNotInitialized)
			return
		}
		ret, err := f(h.driver, q)
		if err != nil {
			h.log(method, q).WithError(err).Debug("dockerplugin: call failed")
			writeErr(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, ret)
	})
}

func (h *Handler) log(method string, q request) logrus.FieldLogger {
	return h.cfg.Logger.WithFields(logrus.Fields{"method": method, "id": q.ID, "parent": q.Parent})
}

func decode(r *http.Request, v any) error {
	err := json.NewDecoder(r.Body).Decode(v)
	if errors.Is(err, io.EOF) { // Docker sends no body with some calls
		return nil
	}
	if err != nil {
		return fmt.Errorf("dockerplugin: %s: bad request body: %w", r.URL.Path, err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", MimeType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeErr answers with a non-200 status and {"Err": ...}: Docker's client
// turns that into the error its caller sees.
func writeErr(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, response{Err: err.Error()})
}

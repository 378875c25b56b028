package enginetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// What the plugin's HTTP hop costs a docker operation: the plugin logs,
// at debug level, the time each request spent in its handler
// ("dockerplugin: served ns=..."); a benchmark on thinlayer reports the
// requests an operation made (plugin-calls/op), the time they spent in the
// plugin (plugin-ms/op), and calls times the measured round trip of an
// Exists request (hop-ms/op): the transport's share, against ns/op.

// hopMark is where the plugin's log stood when a timed span started.
type hopMark struct{ offset int64 }

func (e *benchEngine) pluginLog() string { return filepath.Join(e.dir, "plugin.log") }

// span times f, one timed part of an iteration (the timer is stopped
// outside spans), and counts the plugin requests f made.
func (e *benchEngine) span(b *testing.B, f func()) { e.spanFrom(b, e.hopMark(b, true), f) }

func (e *benchEngine) spanFrom(b *testing.B, m hopMark, f func()) {
	b.StartTimer()
	f()
	b.StopTimer()
	e.hopAdd(b, m)
}

// hopMark marks the plugin's log; sync waits for the running plugin's
// earlier lines first.
func (e *benchEngine) hopMark(b *testing.B, sync bool) hopMark {
	if e.name != benchThin {
		return hopMark{}
	}
	if sync {
		e.syncPluginLog(b)
	}
	fi, err := os.Stat(e.pluginLog())
	if err != nil {
		b.Fatal(err)
	}
	return hopMark{fi.Size()}
}

// hopAdd counts the requests served since m and their time in the plugin.
func (e *benchEngine) hopAdd(b *testing.B, m hopMark) {
	if e.name != benchThin {
		return
	}
	e.syncPluginLog(b)
	f, err := os.Open(e.pluginLog())
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(m.offset, io.SeekStart); err != nil {
		b.Fatal(err)
	}
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Text()
		if !strings.Contains(line, "dockerplugin: served") || strings.Contains(line, "path=/GraphDriver.Exists") {
			continue // Exists: the sentinel requests of syncPluginLog (Docker asks Exists rarely)
		}
		_, v, ok := strings.Cut(line, " ns=")
		if !ok {
			continue
		}
		v, _, _ = strings.Cut(v, " ")
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("plugin log: %q: %v", line, err)
		}
		e.hopCalls++
		e.hopNs += n
	}
}

// hopReport adds the metrics above for the benchmark's timed spans.
func (e *benchEngine) hopReport(b *testing.B) {
	if e.name != benchThin {
		return
	}
	per := float64(b.N)
	b.ReportMetric(float64(e.hopCalls)/per, "plugin-calls/op")
	b.ReportMetric(float64(e.hopNs)/per/1e6, "plugin-ms/op")
	b.ReportMetric(float64(e.hopCalls)*e.rtt/per/1e6, "hop-ms/op")
}

// syncPluginLog makes an Exists request of a fresh id and waits until the
// plugin's log, copied by this process, shows it: every earlier line is
// then in the file.
func (e *benchEngine) syncPluginLog(b *testing.B) {
	e.seq++
	id := fmt.Sprintf("bench-sentinel-%d", e.seq)
	if _, err := e.pluginCall("Exists", id); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for {
		data, err := os.ReadFile(e.pluginLog())
		if err != nil {
			b.Fatal(err)
		}
		if bytes.Contains(data, []byte("id="+id)) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the plugin log never showed %s", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var pluginClient = &http.Client{Transport: &http.Transport{
	DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join("/run/docker/plugins", pluginName+".sock"))
	},
}}

// pluginCall posts a GraphDriver request as Docker's client does (JSON,
// keep-alive connection).
func (e *benchEngine) pluginCall(method, id string) ([]byte, error) {
	resp, err := pluginClient.Post("http://plugin/GraphDriver."+method, "application/vnd.docker.plugins.v1.2+json",
		strings.NewReader(fmt.Sprintf(`{"ID":%q}`, id)))
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", method, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("plugin %s: %s: %s", method, resp.Status, body)
	}
	return body, err
}

// measureRTT is the mean wall time of an Exists round trip (a map lookup
// in the plugin), over 200 requests after a warm-up.
func (e *benchEngine) measureRTT(b testing.TB) float64 {
	const n = 200
	for range 10 {
		if _, err := e.pluginCall("Exists", "bench-rtt"); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	for range n {
		if _, err := e.pluginCall("Exists", "bench-rtt"); err != nil {
			b.Fatal(err)
		}
	}
	return float64(time.Since(start).Nanoseconds()) / n
}

func writeFile(b testing.TB, path, body string) {
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		b.Fatal(err)
	}
}

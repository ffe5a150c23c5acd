// Command loadgen is the native load generator of the product benchmark (gateway/bench/
// bench_pipeline.py). It holds N device connections on loopback and sends 100-byte CBOR telemetry
// payloads as Nanogridata frames (16-byte tags, per-device HKDF keys, every ACK's tag and status
// verified), as MQTT 3.1.1 QoS 1 publishes (PUBACK latency), or as frames to an echo server (fixed
// size replies). Scenarios: closed loop (K in flight per connection), open loop (a total rate
// paced evenly over the connections; latency runs from each frame's intended send time, so a
// server that falls behind shows as queueing instead of slowing the sender down), and idle (hold
// N connections, for a memory reading). It stops by itself (-duration, -drain, -max-frames).
//
// stdout: one JSON line per event ({"event":"start"} when every connection is up and the
// measured window begins, {"event":"end"} when it ends), then the report as one JSON line.
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type config struct {
	addr           string
	proto          string // nanogridata | mqtt | echo
	mode           string // closed | open | idle
	conns          int
	inflight       int
	rate           float64
	duration       time.Duration
	drain          time.Duration
	maxFrames      int64
	maxOutstanding int
	payloadSize    int
	tagLen         int
	model          uint8
	deviceBase     uint32
	seqStart       uint32
	secret         []byte
	echoReply      int
	connectPar     int
	ackedOut       string
}

const maxDuration = 600 * time.Second

func parseFlags(args []string) (config, error) {
	var c config
	var secretHex, secretFile, model string
	var duration, drain float64
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:5680", "server address (loopback only)")
	fs.StringVar(&c.proto, "proto", "nanogridata", "nanogridata | mqtt | echo")
	fs.StringVar(&c.mode, "mode", "closed", "closed (-inflight per connection) | open (-rate in total) | idle")
	fs.IntVar(&c.conns, "conns", 1000, "connections, one device each")
	fs.IntVar(&c.inflight, "inflight", 1, "closed loop: frames in flight per connection")
	fs.Float64Var(&c.rate, "rate", 10000, "open loop: frames per second over all connections")
	fs.Float64Var(&duration, "duration", 10, "seconds of the measured window (idle: seconds held)")
	fs.Float64Var(&drain, "drain", 10, "seconds to wait for the last ACKs after the window")
	fs.Int64Var(&c.maxFrames, "max-frames", 20_000_000, "stop sending after this many frames")
	fs.IntVar(&c.maxOutstanding, "max-outstanding", 4096, "open loop: unanswered frames per connection before its sender waits")
	fs.IntVar(&c.payloadSize, "payload", 100, "CBOR payload bytes")
	fs.IntVar(&c.tagLen, "tag", 16, "tag bytes: 16 or 32")
	fs.StringVar(&model, "model", "0x10", "model id")
	var base, seq uint
	fs.UintVar(&base, "device-base", 1, "device id of the first connection")
	fs.UintVar(&seq, "seq-start", 1, "first sequence number of every device")
	fs.StringVar(&secretHex, "secret-hex", "", "the model's master secret, hex")
	fs.StringVar(&secretFile, "secret-file", "", "file holding the master secret, hex (instead of -secret-hex)")
	fs.IntVar(&c.echoReply, "echo-reply", 42, "echo: bytes the server answers per frame")
	fs.IntVar(&c.connectPar, "connect-parallel", 200, "connects in progress at once")
	fs.StringVar(&c.ackedOut, "acked-out", "", "nanogridata: write the timestamps of the frames ACKed OK here, "+
		"one JSON object {device: [ms, ...]}: what the collector must hold (the 0-lost check)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.duration = time.Duration(duration * float64(time.Second))
	c.drain = time.Duration(drain * float64(time.Second))
	c.deviceBase, c.seqStart = uint32(base), uint32(seq)
	m, err := strconv.ParseUint(model, 0, 8)
	if err != nil {
		return c, fmt.Errorf("-model %q: want a byte such as 0x10", model)
	}
	c.model = uint8(m)
	if secretFile != "" {
		data, err := os.ReadFile(secretFile)
		if err != nil {
			return c, fmt.Errorf("-secret-file: %v", err)
		}
		secretHex = strings.TrimSpace(string(data))
	}
	if c.secret, err = hex.DecodeString(secretHex); err != nil {
		return c, fmt.Errorf("master secret: not hex: %v", err)
	}
	host, _, err := net.SplitHostPort(c.addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return c, fmt.Errorf("-addr %q: loopback addresses only (127.0.0.0/8, ::1)", c.addr)
	}
	switch {
	case c.proto != "nanogridata" && c.proto != "mqtt" && c.proto != "echo":
		return c, fmt.Errorf("-proto %q: nanogridata, mqtt or echo", c.proto)
	case c.mode != "closed" && c.mode != "open" && c.mode != "idle":
		return c, fmt.Errorf("-mode %q: closed, open or idle", c.mode)
	case c.proto == "nanogridata" && len(c.secret) < 32:
		return c, errors.New("nanogridata needs the model's master secret (-secret-hex or -secret-file, >= 32 bytes)")
	case c.conns < 1 || c.conns > 20000:
		return c, errors.New("-conns: 1 to 20000")
	case c.inflight < 1 || c.inflight > 1024:
		return c, errors.New("-inflight: 1 to 1024")
	case c.mode == "open" && (c.rate <= 0 || c.rate > 1e6):
		return c, errors.New("-rate: more than 0, at most 1,000,000")
	case c.duration <= 0 || c.duration > maxDuration || c.drain < 0 || c.drain > maxDuration:
		return c, errors.New("-duration and -drain: at most 600 s")
	case c.maxOutstanding < 1 || c.maxOutstanding > 65000:
		return c, errors.New("-max-outstanding: 1 to 65000 (MQTT packet ids are 16 bits)")
	case c.tagLen != 16 && c.tagLen != 32:
		return c, errors.New("-tag: 16 or 32")
	case c.payloadSize < 0 || c.payloadSize > maxPayload:
		return c, errors.New("-payload: 0 to 1024")
	case c.echoReply < 1:
		return c, errors.New("-echo-reply: at least 1")
	case c.ackedOut != "" && c.proto != "nanogridata":
		return c, errors.New("-acked-out: nanogridata only")
	}
	return c, nil
}

// clock: nanoseconds on the monotonic clock since the program started.
var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }

// counts of one connection, owned by its reader until the run ends.
type counts struct {
	ok, duplicate, busy, stale, invalid, badTag, badAck, unexpected, ackedInWindow int64
	latencies                                                                      []int64
	okTimestamps                                                                   []uint64 // -acked-out
}

// sent frame awaiting its answer.
type pendingFrame struct {
	intended int64  // when it was due (latency counts from here)
	ts       uint64 // its timestamp (ms): the collector's point
}

type conn struct {
	cfg      *config
	nc       net.Conn
	index    int
	device   uint32
	tx, rx   *Device // separate MAC states: the writer and the reader run concurrently
	payload  []byte
	topic    string
	credits  chan struct{}
	mu       sync.Mutex
	pending  map[uint32]pendingFrame // ack id (seq; MQTT packet id) -> the frame
	nextSeq  uint32
	lastTs   uint64
	sent     int64
	echoNext uint32 // echo: replies come in order, the next one answers this seq
	counts   counts
	readErr  error
}

type run struct {
	cfg          config
	sentTotal    atomic.Int64
	windowEnd    atomic.Int64
	connErrors   atomic.Int64
	connectFails int
}

func (r *run) newConn(i int) (*conn, error) {
	cfg := &r.cfg
	c := &conn{cfg: cfg, index: i, device: cfg.deviceBase + uint32(i), nextSeq: cfg.seqStart,
		pending: make(map[uint32]pendingFrame), echoNext: cfg.seqStart}
	c.topic = fmt.Sprintf("ngd/%d", c.device)
	if cfg.proto == "nanogridata" || cfg.proto == "echo" {
		var key []byte
		if len(cfg.secret) > 0 {
			var err error
			if key, err = DeriveDeviceKey(cfg.secret, cfg.model, c.device); err != nil {
				return nil, err
			}
		} else {
			key = make([]byte, 32) // echo needs no real key
		}
		c.tx = NewDevice(key, cfg.model, c.device, 0x01, cfg.tagLen)
		c.rx = NewDevice(key, cfg.model, c.device, 0x01, cfg.tagLen)
	}
	var err error
	if c.payload, err = TelemetryPayload(cfg.payloadSize, c.device); err != nil {
		return nil, err
	}
	slots := cfg.inflight
	if cfg.mode == "open" {
		slots = cfg.maxOutstanding
	}
	c.credits = make(chan struct{}, slots)
	for k := 0; k < slots; k++ {
		c.credits <- struct{}{}
	}
	var nc net.Conn
	for attempt := 0; ; attempt++ {
		nc, err = net.DialTimeout("tcp", cfg.addr, 10*time.Second)
		if err == nil || attempt == 2 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	c.nc = nc
	if cfg.proto == "mqtt" {
		if err := c.mqttHandshake(); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *conn) mqttHandshake() error {
	_ = c.nc.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.nc.SetDeadline(time.Time{})
	if _, err := c.nc.Write(MQTTConnect(fmt.Sprintf("ngd-bench-%d", c.device))); err != nil {
		return err
	}
	kind, body, err := ReadMQTTPacket(bufio.NewReader(c.nc), nil)
	if err != nil {
		return fmt.Errorf("CONNACK: %v", err)
	}
	return CheckConnack(kind, body)
}

// appendFrame adds the next frame to buf and records it as pending since `intended`.
func (c *conn) appendFrame(buf []byte, intended int64) []byte {
	seq := c.nextSeq
	c.nextSeq++
	c.sent++
	id := seq
	var ts uint64
	if c.cfg.proto == "mqtt" {
		id = seq%65535 + 1
		buf = AppendMQTTPublish(buf, c.topic, uint16(id), c.payload)
	} else {
		// Distinct timestamps per device: the collector (VictoriaMetrics with
		// -dedup.minScrapeInterval=1ms) keeps one sample per series and millisecond.
		ts = uint64(time.Now().UnixMilli())
		if ts <= c.lastTs {
			ts = c.lastTs + 1
		}
		c.lastTs = ts
		buf = c.tx.AppendFrame(buf, seq, ts, c.payload)
	}
	c.mu.Lock()
	c.pending[id] = pendingFrame{intended: intended, ts: ts}
	c.mu.Unlock()
	return buf
}

func (c *conn) budgetLeft(r *run) bool {
	return r.sentTotal.Load() < r.cfg.maxFrames
}

// closedLoop keeps cfg.inflight frames outstanding: each answer lets the next frame go.
func (c *conn) closedLoop(r *run, end int64) {
	buf := make([]byte, 0, c.cfg.inflight*(headerLen+c.cfg.payloadSize+64))
	for {
		<-c.credits
		t := now()
		if t >= end || !c.budgetLeft(r) {
			return
		}
		buf = c.appendFrame(buf[:0], t)
		n := int64(1)
	more:
		for {
			select {
			case <-c.credits:
				buf = c.appendFrame(buf, t)
				n++
			default:
				break more
			}
		}
		r.sentTotal.Add(n)
		if _, err := c.nc.Write(buf); err != nil {
			r.connErrors.Add(1)
			return
		}
	}
}

// openLoop sends this connection's share of the total rate at evenly spaced intended times,
// phase-shifted per connection so the whole run is smooth; a late sender sends what it owes
// at once, and each frame's latency still counts from its intended time.
func (c *conn) openLoop(r *run, start, end int64) {
	period := float64(c.cfg.conns) * 1e9 / c.cfg.rate
	phase := float64(c.index) * 1e9 / c.cfg.rate
	k := 0
	intended := func(k int) int64 { return start + int64(phase+float64(k)*period) }
	buf := make([]byte, 0, 4096)
	for {
		next := intended(k)
		if next >= end || !c.budgetLeft(r) {
			return
		}
		if d := next - now(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		buf = buf[:0]
		t := now()
		for ; intended(k) <= t && intended(k) < end; k++ {
			<-c.credits // at max-outstanding unanswered frames the sender waits: still counted late
			buf = c.appendFrame(buf, intended(k))
			r.sentTotal.Add(1)
		}
		if _, err := c.nc.Write(buf); err != nil {
			r.connErrors.Add(1)
			return
		}
	}
}

// read parses every answer, verifies it and records its latency until the connection closes.
func (c *conn) read(r *run) {
	br := bufio.NewReaderSize(c.nc, 64*1024)
	var ackBuf []byte
	switch c.cfg.proto {
	case "nanogridata":
		ackBuf = make([]byte, c.rx.AckLen())
	case "echo":
		ackBuf = make([]byte, c.cfg.echoReply)
	}
	var body []byte
	for {
		var id uint32
		status := uint8(statusOK)
		switch c.cfg.proto {
		case "mqtt":
			var kind byte
			var err error
			kind, body, err = ReadMQTTPacket(br, body)
			if err != nil {
				c.readErr = err
				return
			}
			if kind&0xF0 != mqttPuback || len(body) != 2 {
				c.counts.badAck++
				continue
			}
			id = uint32(body[0])<<8 | uint32(body[1])
		case "echo":
			if _, err := io.ReadFull(br, ackBuf); err != nil {
				c.readErr = err
				return
			}
			id = c.echoNext
			c.echoNext++
		default:
			if _, err := io.ReadFull(br, ackBuf); err != nil {
				c.readErr = err
				return
			}
			ack, err := c.rx.VerifyAck(ackBuf)
			if errors.Is(err, errBadTag) {
				c.counts.badTag++
				continue
			} else if err != nil {
				c.counts.badAck++
				continue
			}
			id, status = ack.Seq, ack.Status
		}
		t := now()
		c.mu.Lock()
		frame, known := c.pending[id]
		if known {
			delete(c.pending, id)
		}
		c.mu.Unlock()
		if !known {
			c.counts.unexpected++
			continue
		}
		c.credits <- struct{}{}
		switch status {
		case statusOK:
			c.counts.ok++
			if c.cfg.ackedOut != "" {
				c.counts.okTimestamps = append(c.counts.okTimestamps, frame.ts)
			}
		case statusDuplicate:
			c.counts.duplicate++
		case statusBusy:
			c.counts.busy++
		case statusStale:
			c.counts.stale++
		default:
			c.counts.invalid++
		}
		if status == statusOK || status == statusDuplicate {
			c.counts.latencies = append(c.counts.latencies, t-frame.intended)
			if t < r.windowEnd.Load() {
				c.counts.ackedInWindow++
			}
		}
	}
}

func (c *conn) outstanding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func emit(v any) {
	data, _ := json.Marshal(v)
	fmt.Println(string(data))
}

func percentileMs(sorted []int64, p float64) any {
	if len(sorted) == 0 {
		return nil
	}
	i := int(p / 100 * float64(len(sorted)))
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return float64(sorted[i]/1000) / 1000 // ms, µs resolution
}

func (r *run) connectAll() []*conn {
	conns := make([]*conn, r.cfg.conns)
	sem := make(chan struct{}, r.cfg.connectPar)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := r.newConn(i)
			if err != nil {
				mu.Lock()
				r.connectFails++
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %d connects failed, first: %v\n", r.connectFails, firstErr)
	}
	live := conns[:0]
	for _, c := range conns {
		if c != nil {
			live = append(live, c)
		}
	}
	return live
}

func (r *run) execute() map[string]any {
	cfg := &r.cfg
	conns := r.connectAll()
	report := map[string]any{
		"proto": cfg.proto, "mode": cfg.mode, "connections": len(conns), "connect_failures": r.connectFails,
		"payload_bytes": cfg.payloadSize,
	}
	start := now()
	cpu0 := cpuSeconds()
	emit(map[string]any{"event": "start", "connections": len(conns)})
	if cfg.mode == "idle" {
		time.Sleep(cfg.duration)
		emit(map[string]any{"event": "end"})
		for _, c := range conns {
			c.nc.Close()
		}
		report["held_s"] = cfg.duration.Seconds()
		report["loadgen_cpu_s"] = cpuSeconds() - cpu0
		return report
	}
	end := start + int64(cfg.duration)
	r.windowEnd.Store(end)
	var readers, writers sync.WaitGroup
	for _, c := range conns {
		readers.Add(1)
		writers.Add(1)
		go func(c *conn) { defer readers.Done(); c.read(r) }(c)
		go func(c *conn) {
			defer writers.Done()
			if cfg.mode == "closed" {
				c.closedLoop(r, end)
			} else {
				c.openLoop(r, start, end)
			}
		}(c)
	}
	writers.Wait()
	if d := end - now(); d > 0 { // a writer stopped early (budget, error): keep the window whole
		time.Sleep(time.Duration(d))
	}
	windowS := float64(now()-start) / 1e9
	cpuWindow := cpuSeconds() - cpu0
	emit(map[string]any{"event": "end"})
	drainUntil := now() + int64(cfg.drain)
	for now() < drainUntil {
		left := 0
		for _, c := range conns {
			left += c.outstanding()
		}
		if left == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	unanswered := 0
	for _, c := range conns {
		unanswered += c.outstanding()
		c.nc.Close()
	}
	readers.Wait()
	var total counts
	var sent int64
	readErrors := 0
	for _, c := range conns {
		sent += c.sent
		k := &c.counts
		total.ok += k.ok
		total.duplicate += k.duplicate
		total.busy += k.busy
		total.stale += k.stale
		total.invalid += k.invalid
		total.badTag += k.badTag
		total.badAck += k.badAck
		total.unexpected += k.unexpected
		total.ackedInWindow += k.ackedInWindow
		total.latencies = append(total.latencies, k.latencies...)
		if c.readErr != nil && !errors.Is(c.readErr, net.ErrClosed) && c.outstanding() > 0 {
			readErrors++
		}
	}
	if cfg.ackedOut != "" {
		if err := writeAcked(cfg.ackedOut, conns); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen: -acked-out:", err)
			report["acked_out_error"] = err.Error()
		}
	}
	sort.Slice(total.latencies, func(i, j int) bool { return total.latencies[i] < total.latencies[j] })
	lat := total.latencies
	acked := total.ok + total.duplicate
	report["window_s"] = windowS
	report["sent"] = sent
	report["acked"] = acked
	report["acked_per_s"] = float64(total.ackedInWindow) / windowS
	report["latency_ms"] = map[string]any{
		"p50": percentileMs(lat, 50), "p99": percentileMs(lat, 99), "p99.9": percentileMs(lat, 99.9),
		"max": percentileMs(lat, 100), "samples": len(lat),
		"from": map[string]string{"closed": "write of the frame", "open": "its intended send time"}[cfg.mode],
	}
	report["status"] = map[string]int64{
		"ok": total.ok, "duplicate": total.duplicate, "busy": total.busy, "stale": total.stale, "invalid": total.invalid,
	}
	report["errors"] = map[string]int64{
		"bad_tag": total.badTag, "bad_ack": total.badAck, "unexpected_ack": total.unexpected,
		"unanswered": int64(unanswered), "connection_errors": r.connErrors.Load() + int64(readErrors),
		"connect_failures": int64(r.connectFails),
	}
	if cfg.mode == "closed" {
		report["inflight_per_connection"] = cfg.inflight
	} else {
		report["rate_target_per_s"] = cfg.rate
	}
	report["loadgen_cpu_s_window"] = cpuWindow
	report["loadgen_cpu_core_share"] = cpuWindow / windowS
	if total.ackedInWindow > 0 {
		report["loadgen_cpu_us_per_frame"] = cpuWindow / float64(total.ackedInWindow) * 1e6
	}
	return report
}

// writeAcked writes {device: [timestamp ms of each frame ACKed OK]} to path.
func writeAcked(path string, conns []*conn) error {
	acked := make(map[string][]uint64, len(conns))
	for _, c := range conns {
		if len(c.counts.okTimestamps) > 0 {
			acked[strconv.FormatUint(uint64(c.device), 10)] = c.counts.okTimestamps
		}
	}
	data, err := json.Marshal(acked)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	r := &run{cfg: cfg}
	report := r.execute()
	emit(report)
	if errs, ok := report["errors"].(map[string]int64); ok && errs["bad_tag"]+errs["bad_ack"]+errs["unexpected_ack"] > 0 {
		os.Exit(1)
	}
	if r.connectFails > 0 {
		os.Exit(1)
	}
}

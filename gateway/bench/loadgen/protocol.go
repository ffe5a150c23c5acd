package main

// Nanogridata protocol v1 as a device speaks it (docs/protocol.md): frame encoding, HKDF device
// keys and ACK verification. docs/protocol-vectors.json is the source of truth shared with the
// gateway (Python) and the firmware (C); protocol_test.go checks this file against it.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"

	"golang.org/x/crypto/hkdf"
)

const (
	headerLen   = 24
	maxPayload  = 1024
	flagLongTag = 0x01
	typeAck     = 0x80
	hkdfSalt    = "nanogridata/v1"
	ackPayload  = 2 // CBOR array [status]: 0x81, status
)

// ACK statuses (docs/protocol.md, ACK).
const (
	statusOK        = 0
	statusDuplicate = 1
	statusStale     = 2
	statusInvalid   = 3
	statusBusy      = 4
)

var magic = [2]byte{0xC1, 0x53}

// DeriveDeviceKey is HKDF-SHA256(master, salt "nanogridata/v1", info model‖device (BE), L=32).
func DeriveDeviceKey(master []byte, model uint8, device uint32) ([]byte, error) {
	info := make([]byte, 5)
	info[0] = model
	binary.BigEndian.PutUint32(info[1:], device)
	key := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, master, []byte(hkdfSalt), info), key); err != nil {
		return nil, err
	}
	return key, nil
}

// Device holds one device's key and header fields; it is not safe for concurrent use (each
// connection has its own, used by its writer, and a second one for its reader).
type Device struct {
	Model  uint8
	ID     uint32
	Type   uint8
	TagLen int
	mac    hash.Hash
	sum    []byte
}

// NewDevice keys a device; tagLen is 16 or 32.
func NewDevice(key []byte, model uint8, id uint32, ftype uint8, tagLen int) *Device {
	return &Device{Model: model, ID: id, Type: ftype, TagLen: tagLen, mac: hmac.New(sha256.New, key),
		sum: make([]byte, 0, sha256.Size)}
}

func (d *Device) flags() byte {
	if d.TagLen == 32 {
		return flagLongTag
	}
	return 0
}

func (d *Device) tag(dst, body []byte) []byte {
	d.mac.Reset()
	d.mac.Write(body)
	d.sum = d.mac.Sum(d.sum[:0])
	return append(dst, d.sum[:d.TagLen]...)
}

// AppendFrame appends one frame (header, payload, tag) to dst.
func (d *Device) AppendFrame(dst []byte, seq uint32, tsMs uint64, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, magic[0], magic[1], 1, d.Model, d.Type, d.flags())
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(payload)))
	dst = binary.BigEndian.AppendUint32(dst, d.ID)
	dst = binary.BigEndian.AppendUint32(dst, seq)
	dst = binary.BigEndian.AppendUint64(dst, tsMs)
	dst = append(dst, payload...)
	return d.tag(dst, dst[start:])
}

// FrameLen is the size of a frame with an n-byte payload.
func (d *Device) FrameLen(n int) int { return headerLen + n + d.TagLen }

// AckLen is the size of every ACK this device receives.
func (d *Device) AckLen() int { return headerLen + ackPayload + d.TagLen }

// Ack is a verified ACK.
type Ack struct {
	Seq    uint32
	TsMs   uint64
	Status uint8
}

var errBadTag = errors.New("ACK tag does not verify")

// VerifyAck checks one complete ACK (AckLen bytes): structure, that it names this device, and
// its tag (constant time). errBadTag is returned for a wrong tag, another error for the rest.
func (d *Device) VerifyAck(b []byte) (Ack, error) {
	if len(b) != d.AckLen() {
		return Ack{}, fmt.Errorf("ACK of %d bytes, want %d", len(b), d.AckLen())
	}
	switch {
	case b[0] != magic[0] || b[1] != magic[1] || b[2] != 1:
		return Ack{}, errors.New("ACK with bad magic or version")
	case b[3] != d.Model || b[4] != typeAck || b[5] != d.flags():
		return Ack{}, fmt.Errorf("ACK with model %#x type %#x flags %#x", b[3], b[4], b[5])
	case binary.BigEndian.Uint16(b[6:]) != ackPayload || b[24] != 0x81 || b[25] > 0x17:
		return Ack{}, errors.New("ACK payload is not [status]")
	case binary.BigEndian.Uint32(b[8:]) != d.ID:
		return Ack{}, fmt.Errorf("ACK for device %d on device %d's connection", binary.BigEndian.Uint32(b[8:]), d.ID)
	}
	body := b[:headerLen+ackPayload]
	d.mac.Reset()
	d.mac.Write(body)
	d.sum = d.mac.Sum(d.sum[:0])
	if !hmac.Equal(d.sum[:d.TagLen], b[headerLen+ackPayload:]) {
		return Ack{}, errBadTag
	}
	return Ack{Seq: binary.BigEndian.Uint32(b[12:]), TsMs: binary.BigEndian.Uint64(b[16:]), Status: b[25]}, nil
}

// TelemetryPayload is a CBOR map of exactly size bytes that the gateway's TELEMETRY schema accepts:
// {"p": float64, "t": float32, "dev": uint32, "pad": text}, the text sized to fit.
func TelemetryPayload(size int, device uint32) ([]byte, error) {
	var fixed []byte
	fixed = append(fixed, 0xA4, 0x61, 'p', 0xFB)
	fixed = binary.BigEndian.AppendUint64(fixed, math.Float64bits(1013.25))
	fixed = append(fixed, 0x61, 't', 0xFA)
	fixed = binary.BigEndian.AppendUint32(fixed, math.Float32bits(21.5))
	fixed = append(fixed, 0x63, 'd', 'e', 'v', 0x1A)
	fixed = binary.BigEndian.AppendUint32(fixed, device)
	fixed = append(fixed, 0x63, 'p', 'a', 'd')
	// Text header: 1 byte up to 23 characters, else 2 (0x78 n; valid CBOR for any n, so a size
	// whose 1-byte form would need 24 characters takes 23 with the 2-byte form).
	for _, head := range []int{1, 2} {
		n := size - len(fixed) - head
		if n < 0 || n > 255 || (head == 1 && n > 23) {
			continue
		}
		out := append([]byte(nil), fixed...)
		if head == 1 {
			out = append(out, 0x60|byte(n))
		} else {
			out = append(out, 0x78, byte(n))
		}
		for i := 0; i < n; i++ {
			out = append(out, 'x')
		}
		return out, nil
	}
	return nil, fmt.Errorf("cannot make a %d-byte telemetry payload (%d to %d)", size, len(fixed)+1, len(fixed)+257)
}

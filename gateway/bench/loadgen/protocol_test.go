package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// The vectors file shared with the gateway's tests and the firmware's: the source of truth.
type vectors struct {
	HKDF []struct {
		MasterSecretHex string `json:"master_secret_hex"`
		ModelID         uint8  `json:"model_id"`
		DeviceID        uint32 `json:"device_id"`
		DeviceKeyHex    string `json:"device_key_hex"`
	} `json:"hkdf"`
	Frames []struct {
		Name        string `json:"name"`
		ModelID     uint8  `json:"model_id"`
		Type        uint8  `json:"type"`
		TagLen      int    `json:"tag_len"`
		DeviceID    uint32 `json:"device_id"`
		Seq         uint32 `json:"seq"`
		TimestampMs uint64 `json:"timestamp_ms"`
		NowMs       uint64 `json:"now_ms"`
		KeyHex      string `json:"key_hex"`
		PayloadHex  string `json:"payload_hex"`
		FrameHex    string `json:"frame_hex"`
		ExpectAck   string `json:"expect_ack_hex"`
	} `json:"frames"`
	Acks []struct {
		Name        string `json:"name"`
		ModelID     uint8  `json:"model_id"`
		DeviceID    uint32 `json:"device_id"`
		Seq         uint32 `json:"seq"`
		TimestampMs uint64 `json:"timestamp_ms"`
		Status      uint8  `json:"status"`
		TagLen      int    `json:"tag_len"`
		KeyHex      string `json:"key_hex"`
		FrameHex    string `json:"frame_hex"`
	} `json:"acks"`
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	path := filepath.Join("..", "..", "..", "docs", "protocol-vectors.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the shared vectors: %v", err)
	}
	var v vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	if len(v.HKDF) == 0 || len(v.Frames) == 0 || len(v.Acks) == 0 {
		t.Fatalf("%s has no hkdf, frames or acks vectors", path)
	}
	return v
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestHKDFVectors(t *testing.T) {
	for _, v := range loadVectors(t).HKDF {
		key, err := DeriveDeviceKey(unhex(t, v.MasterSecretHex), v.ModelID, v.DeviceID)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(key); got != v.DeviceKeyHex {
			t.Errorf("model %#x device %d: key %s, want %s", v.ModelID, v.DeviceID, got, v.DeviceKeyHex)
		}
	}
}

func TestFrameEncodingAndItsAckVerify(t *testing.T) {
	for _, v := range loadVectors(t).Frames {
		d := NewDevice(unhex(t, v.KeyHex), v.ModelID, v.DeviceID, v.Type, v.TagLen)
		frame := d.AppendFrame([]byte("prefix"), v.Seq, v.TimestampMs, unhex(t, v.PayloadHex))
		if got := hex.EncodeToString(frame[len("prefix"):]); got != v.FrameHex {
			t.Errorf("%s: frame\n %s, want\n %s", v.Name, got, v.FrameHex)
		}
		if d.FrameLen(len(v.PayloadHex)/2) != len(v.FrameHex)/2 {
			t.Errorf("%s: FrameLen %d", v.Name, d.FrameLen(len(v.PayloadHex)/2))
		}
		ack, err := d.VerifyAck(unhex(t, v.ExpectAck))
		if err != nil {
			t.Errorf("%s: the expected ACK does not verify: %v", v.Name, err)
			continue
		}
		if ack.Seq != v.Seq || ack.Status != statusOK || ack.TsMs != v.NowMs {
			t.Errorf("%s: ACK %+v, want seq %d status OK ts %d", v.Name, ack, v.Seq, v.NowMs)
		}
	}
}

func TestAckVectorsVerifyAndTamperingIsCaught(t *testing.T) {
	for _, v := range loadVectors(t).Acks {
		d := NewDevice(unhex(t, v.KeyHex), v.ModelID, v.DeviceID, 0x01, v.TagLen)
		raw := unhex(t, v.FrameHex)
		ack, err := d.VerifyAck(raw)
		if err != nil {
			t.Errorf("%s: %v", v.Name, err)
			continue
		}
		if ack.Seq != v.Seq || ack.Status != v.Status || ack.TsMs != v.TimestampMs {
			t.Errorf("%s: ACK %+v, want seq %d status %d ts %d", v.Name, ack, v.Seq, v.Status, v.TimestampMs)
		}
		for _, pos := range []int{12, 17, 25, len(raw) - 1} { // seq, timestamp, status, tag
			bad := bytes.Clone(raw)
			bad[pos] ^= 0x01
			if _, err := d.VerifyAck(bad); !errors.Is(err, errBadTag) {
				t.Errorf("%s: byte %d flipped: err %v, want a bad tag", v.Name, pos, err)
			}
		}
		other := NewDevice(unhex(t, v.KeyHex), v.ModelID, v.DeviceID+1, 0x01, v.TagLen)
		if _, err := other.VerifyAck(raw); err == nil || errors.Is(err, errBadTag) {
			t.Errorf("%s: an ACK naming another device must be refused as such, got %v", v.Name, err)
		}
		wrongKey := NewDevice(make([]byte, 32), v.ModelID, v.DeviceID, 0x01, v.TagLen)
		if _, err := wrongKey.VerifyAck(raw); !errors.Is(err, errBadTag) {
			t.Errorf("%s: another key: err %v, want a bad tag", v.Name, err)
		}
	}
}

func TestTelemetryPayloadSizes(t *testing.T) {
	for _, size := range []int{33, 55, 56, 57, 100, 200} {
		p, err := TelemetryPayload(size, 7)
		if err != nil {
			t.Errorf("size %d: %v", size, err)
			continue
		}
		if len(p) != size || p[0] != 0xA4 {
			t.Errorf("size %d: got %d bytes starting %#x", size, len(p), p[0])
		}
	}
	if _, err := TelemetryPayload(10, 7); err == nil {
		t.Error("a 10-byte payload cannot hold the map: want an error")
	}
}

func TestMQTTPublishAndPuback(t *testing.T) {
	pub := AppendMQTTPublish(nil, "ngd/1", 258, []byte("xyz"))
	want := []byte{0x32, 12, 0, 5, 'n', 'g', 'd', '/', '1', 1, 2, 'x', 'y', 'z'}
	if !bytes.Equal(pub, want) {
		t.Errorf("PUBLISH % x, want % x", pub, want)
	}
	kind, body, err := ReadMQTTPacket(bufio.NewReader(bytes.NewReader([]byte{0x40, 2, 1, 2})), nil)
	if err != nil || kind != mqttPuback || !bytes.Equal(body, []byte{1, 2}) {
		t.Errorf("PUBACK: %#x % x %v", kind, body, err)
	}
	if got := appendVarint(nil, 321); !bytes.Equal(got, []byte{0xC1, 0x02}) {
		t.Errorf("varint 321: % x", got)
	}
	if err := CheckConnack(0x20, []byte{0, 5}); err == nil {
		t.Error("CONNACK with return code 5 must be refused")
	}
}

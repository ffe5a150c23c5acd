package main

// A minimal MQTT 3.1.1 QoS 1 publisher: CONNECT/CONNACK, PUBLISH (QoS 1) and PUBACK, nothing
// else (keep-alive 0, so no PINGREQ). A client library would hide the PUBACK behind its own
// goroutines and token channels; here the PUBACK is parsed on the same reader path as a
// Nanogridata ACK, so both latencies are measured at the same point.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	mqttConnect = 0x10
	mqttConnack = 0x20
	mqttPublish = 0x30
	mqttPuback  = 0x40
	mqttQoS1    = 0x02
)

func appendVarint(dst []byte, n int) []byte {
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			return dst
		}
	}
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// MQTTConnect is a CONNECT packet: protocol level 4, clean session, keep-alive 0.
func MQTTConnect(clientID string) []byte {
	var body []byte
	body = appendString(body, "MQTT")
	body = append(body, 4, 0x02, 0, 0) // level 4; flags: clean session; keep-alive 0
	body = appendString(body, clientID)
	out := appendVarint([]byte{mqttConnect}, len(body))
	return append(out, body...)
}

// AppendMQTTPublish appends a QoS 1 PUBLISH with packet identifier pid (1..65535).
func AppendMQTTPublish(dst []byte, topic string, pid uint16, payload []byte) []byte {
	dst = append(dst, mqttPublish|mqttQoS1)
	dst = appendVarint(dst, 2+len(topic)+2+len(payload))
	dst = appendString(dst, topic)
	dst = binary.BigEndian.AppendUint16(dst, pid)
	return append(dst, payload...)
}

// ReadMQTTPacket reads one packet: its type byte and its body (reusing buf).
func ReadMQTTPacket(r *bufio.Reader, buf []byte) (byte, []byte, error) {
	kind, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, shift := 0, 0
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		if i == 4 {
			return 0, nil, errors.New("MQTT remaining length longer than 4 bytes")
		}
		n |= int(b&0x7F) << shift
		shift += 7
		if b&0x80 == 0 {
			break
		}
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err = io.ReadFull(r, buf)
	return kind, buf, err
}

// CheckConnack accepts only a CONNACK with return code 0.
func CheckConnack(kind byte, body []byte) error {
	if kind&0xF0 != mqttConnack || len(body) != 2 {
		return fmt.Errorf("expected CONNACK, got packet type %#x (%d bytes)", kind, len(body))
	}
	if body[1] != 0 {
		return fmt.Errorf("CONNACK refused, return code %d", body[1])
	}
	return nil
}

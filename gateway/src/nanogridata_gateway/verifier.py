"""Sans-IO verification pipeline: one frame's bytes + the time -> a verdict (docs/protocol.md).

Order: structure -> known model -> tag length -> MAC (constant time) -> timestamp window ->
replay window -> CBOR with limits -> schema. Storing and marking the replay window happen in the
server, after this pipeline accepted the frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from hmac import compare_digest

from .cbor_limits import CborError, decode
from .keys import ModelKeys
from .mac import DeviceMac, hmac_sha256
from .protocol import (
    DEVICE_TYPES,
    FLAG_LONG_TAG,
    FUTURE_SKEW_MS,
    HEADER_LEN,
    LONG_TAG,
    MAGIC,
    MAX_PAYLOAD,
    RESERVED_FLAGS,
    SHORT_TAG,
    VERSION,
    AckStatus,
    Reject,
    header_fault,
    unpack_header,
)
from .records import ReplayGuard
from .schema import SchemaError, check_schema


@dataclass(frozen=True, slots=True)
class ModelSpec:
    model_id: int
    master_secret: bytes
    high_security: bool = False
    name: str = ""


class Verdict:
    """Result of verifying one frame. `status` is the ACK to send (None: no answer).

    A frame that passed every check has reason None and status OK: the server stores it and
    only then answers OK (or BUSY when the store is full).
    """

    __slots__ = (
        "device_id",
        "frame_type",
        "key",
        "mac",
        "model_id",
        "payload",
        "reason",
        "seq",
        "status",
        "tag_len",
        "timestamp_ms",
        "value",
    )

    def __init__(
        self,
        reason: Reject | None,
        status: int | None,
        model_id: int = -1,
        frame_type: int = -1,
        device_id: int = 0,
        seq: int = 0,
        timestamp_ms: int = 0,
        tag_len: int = SHORT_TAG,
    ) -> None:
        # header fields in one call: once per frame, each attribute is stored once
        self.reason = reason
        self.status = status
        self.model_id = model_id
        self.frame_type = frame_type
        self.device_id = device_id
        self.seq = seq
        self.timestamp_ms = timestamp_ms
        self.tag_len = tag_len
        self.key = b""
        self.mac: DeviceMac | None = None  # set once the tag verified: signs the ACK
        self.payload = b""
        self.value: object = None

    @property
    def accepted(self) -> bool:
        return self.reason is None

    def __repr__(self) -> str:
        return (
            f"Verdict(reason={self.reason!r}, status={self.status!r}, "
            f"model={self.model_id:#x}, seq={self.seq})"
        )


class Verifier:
    """Verifies frames for a set of models. Holds a bounded cache of the MAC states of devices
    whose frames verified (about 0.5 KB a device).

    A frame from a device id that is not cached costs one key derivation and one HMAC with that
    key; only when its tag verifies does the device enter the cache. Forged frames with random
    device ids therefore cannot grow the cache, nor evict the devices that are really sending."""

    def __init__(
        self,
        models: Mapping[int, ModelSpec],
        replay: ReplayGuard,
        max_age_s: float = 86_400,
        future_skew_ms: int = FUTURE_SKEW_MS,
        mac_cache_size: int = 32_768,
    ) -> None:
        self._models = dict(models)
        self._keys = {model: ModelKeys(spec.master_secret) for model, spec in self._models.items()}
        self.replay = replay
        self.max_age_ms = int(max_age_s * 1000)
        self.future_skew_ms = future_skew_ms
        self._macs: dict[int, DeviceMac] = {}
        self._mac_cache_size = mac_cache_size

    @property
    def cached_devices(self) -> int:
        """Devices whose MAC states are cached (at most `mac_cache_size`)."""
        return len(self._macs)

    def device_key(self, model_id: int, device_id: int) -> bytes:
        return self._keys[model_id].device_key(model_id, device_id)

    def device_mac(self, model_id: int, device_id: int) -> DeviceMac:
        """The device's MAC states, cached: only for devices known to be authentic."""
        cache_key = (model_id << 32) | device_id
        mac = self._macs.get(cache_key)
        if mac is None:
            mac = self._cache(cache_key, self.device_key(model_id, device_id))
        return mac

    def _cache(self, cache_key: int, key: bytes) -> DeviceMac:
        mac = DeviceMac(key)
        if len(self._macs) >= self._mac_cache_size:
            del self._macs[next(iter(self._macs))]  # evict the oldest entry
        self._macs[cache_key] = mac
        return mac

    def verify(self, frame: bytes, now_ms: int) -> Verdict:
        """Verify one complete frame (as FrameStream yields them: header + payload + tag)."""
        magic, version, model, ftype, flags, n, dev, seq, ts = unpack_header(frame)
        # header_fault's checks, inline (once per frame); it names the rule when one fails
        if (
            magic != MAGIC
            or version != VERSION
            or flags & RESERVED_FLAGS
            or ftype not in DEVICE_TYPES
            or n > MAX_PAYLOAD
        ):
            return Verdict(header_fault(magic, version, ftype, flags, n), None)
        spec = self._models.get(model)
        if spec is None:
            return Verdict(Reject.UNKNOWN_MODEL, None)
        tag_len = LONG_TAG if flags & FLAG_LONG_TAG else SHORT_TAG
        verdict = Verdict(None, None, model, ftype, dev, seq, ts, tag_len)
        if tag_len == SHORT_TAG and spec.high_security:
            verdict.reason = Reject.SHORT_TAG
            return verdict
        body_end = HEADER_LEN + n
        if len(frame) != body_end + tag_len:
            raise ValueError("frame length does not match its header")
        cache_key = (model << 32) | dev
        mac = self._macs.get(cache_key)
        if mac is not None:
            expected = mac.digest(frame[:body_end])[:tag_len]
            if not compare_digest(expected, frame[body_end:]):
                verdict.reason = Reject.BAD_MAC
                return verdict
        else:  # nothing is cached for a device until one of its frames verified
            key = self.device_key(model, dev)
            expected = hmac_sha256(key, frame[:body_end])[:tag_len]
            if not compare_digest(expected, frame[body_end:]):
                verdict.reason = Reject.BAD_MAC
                return verdict
            mac = self._cache(cache_key, key)
        # Authentic from here on: every outcome is answered.
        verdict.key = mac.key
        verdict.mac = mac
        if ts:
            if ts > now_ms + self.future_skew_ms:
                verdict.reason, verdict.status = Reject.FUTURE, AckStatus.STALE
                return verdict
            if ts < now_ms - self.max_age_ms:
                verdict.reason, verdict.status = Reject.STALE, AckStatus.STALE
                return verdict
        if self.replay.seen(model, dev, seq):
            verdict.reason, verdict.status = Reject.DUPLICATE, AckStatus.DUPLICATE
            return verdict
        payload = frame[HEADER_LEN:body_end]
        try:
            value = decode(payload)
            check_schema(ftype, value)
        except (CborError, SchemaError) as exc:
            verdict.reason, verdict.status = exc.reason, AckStatus.INVALID
            return verdict
        verdict.payload = payload
        verdict.value = value
        verdict.status = AckStatus.OK
        return verdict

"""The Hetzner Cloud API as a state machine, without I/O: ``Twin.handle(request) -> answer``.

What is implemented is what the hcloud OpenTofu provider (via hcloud-go) and the hcloud Python
library call for servers, networks and subnets, firewalls, floating IPs, primary IPs, placement
groups, SSH keys, the catalog lookups and actions; shapes follow hcloud-go's schema package.

Faithful behaviour kept on purpose:

* Actions are asynchronous: ``running`` until ``action_seconds`` after they start, then ``success``
  (their effect is applied at that moment) or ``error`` (``action_failed``, when injected). While
  an action runs on a resource, a new action on it answers 423 ``locked``.
* Lists paginate (``page``, ``per_page`` up to 50, ``meta.pagination``) and filter by ``name``,
  ``label_selector`` and, for actions, ``id``/``status``.
* Errors use the envelope ``{"error": {"code", "message", "details"}}`` with the API's codes and
  statuses; invalid fields are named in ``details.fields``.
* Delete protection is enforced (423 ``protected``); names are unique per resource type (409
  ``uniqueness_error``); retired server types cannot be ordered (``invalid_server_type``).

Interpretations where the reference is silent are marked ``# interpretation``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from . import catalog
from .labels import SelectorError, label_problem, selector

JSON = dict[str, Any]
RATE_LIMIT = 3600  # requests per hour, refilled one per second (the real API's default)
MAX_USER_DATA = 32 * 1024

# code -> (HTTP status, default message), as the API reference lists them.
ERRORS: dict[str, tuple[int, str]] = {
    "invalid_input": (400, "invalid input"),
    "json_error": (400, "invalid JSON in request body"),
    "unauthorized": (401, "unable to authenticate"),
    "forbidden": (403, "insufficient permissions for this request"),
    "not_found": (404, "entity not found"),
    "method_not_allowed": (405, "method not allowed"),
    "conflict": (409, "The resource has changed during the request, please retry"),
    "uniqueness_error": (409, "one or more of the objects fields must be unique"),
    "invalid_server_type": (422, "the server type does not fit or is deprecated"),
    "floating_ip_assigned": (422, "The Floating IP is already assigned"),
    "server_not_stopped": (422, "the action requires a stopped server"),
    "resource_in_use": (422, "the resource is still in use"),
    "ip_not_available": (422, "the provided network IP is not available"),
    "no_subnet_available": (422, "no subnet or IP is available within the network"),
    "server_already_attached": (422, "the server is already attached to the resource"),
    "firewall_already_applied": (422, "firewall was already applied on resource"),
    "firewall_already_removed": (422, "firewall was already removed from the resource"),
    "firewall_resource_not_found": (422, "the resource the firewall should be applied to was not found"),
    "networks_overlap": (422, "the network IP range overlaps with one of the server's networks"),
    "locked": (423, "The item you are trying to access is locked (there is already an Action running)"),
    "protected": (423, "The action you are trying to start is protected for this resource"),
    "rate_limit_exceeded": (429, "limit of 3600 requests per hour reached"),
    "server_error": (500, "Error within the API backend"),
    "bad_gateway": (502, "The request could not be answered by the API backend, please retry"),
    "unavailable": (503, "A service or product is currently not available"),
    "timeout": (504, "The request could not be answered in time, please retry"),
}
# Statuses a fault can inject (0 drops the connection), with the code the API uses for each.
FAULT_CODES: dict[int, str] = {
    409: "conflict",
    423: "locked",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}

# collection -> singular (the JSON key of one object, and the action resource type)
COLLECTIONS: dict[str, str] = {
    "servers": "server",
    "networks": "network",
    "firewalls": "firewall",
    "floating_ips": "floating_ip",
    "primary_ips": "primary_ip",
    "placement_groups": "placement_group",
    "ssh_keys": "ssh_key",
}
CATALOG: dict[str, tuple[str, list[JSON]]] = {
    "locations": ("location", catalog.LOCATIONS),
    "datacenters": ("datacenter", catalog.DATACENTERS),
    "server_types": ("server_type", catalog.SERVER_TYPES),
    "images": ("image", catalog.IMAGES),
}
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$"
)


def iso(ts: float) -> str:
    """The API's timestamp format: ISO 8601 with offset, second precision."""
    return datetime.fromtimestamp(ts, tz=UTC).replace(microsecond=0).isoformat()


class ApiError(Exception):
    def __init__(self, code: str, message: str | None = None, fields: dict[str, str] | None = None) -> None:
        self.status, default = ERRORS[code]
        self.code = code
        self.message = message or default
        self.details: JSON = {}
        if fields:
            self.details = {"fields": [{"name": k, "messages": [v]} for k, v in fields.items()]}
        super().__init__(self.message)

    def body(self) -> JSON:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def invalid(field_name: str, message: str) -> ApiError:
    return ApiError("invalid_input", f"invalid input in field '{field_name}'", {field_name: message})


@dataclass
class Fault:
    endpoint: str  # a route name, see Twin.route_name
    status: int  # a FAULT_CODES key, or 0 to drop the connection without an answer
    times: int


@dataclass
class Action:
    id: int
    command: str
    resources: list[JSON]
    started: float
    seconds: float
    fail: bool
    finish: Callable[[], None] | None = None  # applied once when the action succeeds
    finished: float | None = None

    def refresh(self, now: float) -> None:
        if self.finished is None and now >= self.started + self.seconds:
            self.finished = self.started + self.seconds
            if not self.fail and self.finish is not None:
                self.finish()

    @property
    def status(self) -> str:
        if self.finished is None:
            return "running"
        return "error" if self.fail else "success"

    def to_json(self, now: float) -> JSON:
        if self.finished is not None:
            progress = 100
        else:
            progress = min(99, int(100 * (now - self.started) / self.seconds)) if self.seconds else 0
        return {
            "id": self.id,
            "command": self.command,
            "status": self.status,
            "progress": progress,
            "started": iso(self.started),
            "finished": iso(self.finished) if self.finished is not None else None,
            "resources": copy.deepcopy(self.resources),
            "error": {"code": "action_failed", "message": "Action failed"} if self.status == "error" else None,
        }


@dataclass
class Answer:
    status: int  # 0: drop the connection without an answer
    body: JSON | None
    headers: dict[str, str] = field(default_factory=dict)


class Pool:
    """Addresses handed out from one range, in order, never reusing one still held."""

    def __init__(self, cidr: str, first: int = 2) -> None:
        self.network = ipaddress.ip_network(cidr)
        self.first = first
        self.used: set[str] = set()

    def take(self) -> str:
        for index, address in enumerate(self.network.hosts()):
            if index + 1 < self.first:
                continue
            if str(address) not in self.used:
                self.used.add(str(address))
                return str(address)
        raise ApiError("ip_not_available", f"no free address left in {self.network}")

    def hold(self, address: str) -> None:
        self.used.add(address)

    def release(self, address: str) -> None:
        self.used.discard(address)


class Twin:
    """All state of one Hetzner Cloud project. Not thread-safe: callers serialize ``handle``."""

    def __init__(
        self,
        token: str,
        *,
        action_seconds: float = 0.2,
        public_ipv4_pool: str = "203.0.113.0/24",
        public_ipv6_pool: str = "2001:db8::/32",
        floating_ipv4_pool: str = "198.51.100.0/24",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.clock = clock
        self.action_seconds = action_seconds
        self.fail_next_actions = 0
        self.resources: dict[str, dict[int, JSON]] = {name: {} for name in COLLECTIONS}
        # What the API takes at creation and never returns, kept for a host backend.
        self.user_data: dict[int, str] = {}
        self.server_keys: dict[int, list[str]] = {}
        self.actions: dict[int, Action] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.rate_remaining = RATE_LIMIT
        self.ipv4 = Pool(public_ipv4_pool)
        self.floating_ipv4 = Pool(floating_ipv4_pool)
        self.ipv6_net = ipaddress.ip_network(public_ipv6_pool)
        self.ipv6_next = 1
        self.next_ids: dict[str, int] = {"actions": 1000}
        # Called with each action's JSON when it succeeds, with the lock held and the state already
        # showing the result: the seam for a backend that makes the change physical (a host
        # backend would start a container on create_server, move an address on
        # assign_floating_ip); it must queue slow work, not do it in the call.
        self.listeners: list[Callable[[JSON], None]] = []
        self.changed = False  # set by every change; whoever persists the state clears it

    # -- seeding and inspection (tests, the CLI) ----------------------------------------------
    def _new_id(self, kind: str) -> int:
        nxt = max([self.next_ids.get(kind, 10000), *(i + 1 for i in self.resources.get(kind, {}))])
        self.next_ids[kind] = nxt + 1
        return nxt

    def add_server(self, server_id: int, name: str, location: str = "fsn1") -> JSON:
        """A running server that exists before the test (no public address of its own)."""
        server = self._server_record(server_id, name, catalog.SERVER_TYPES[4], catalog.IMAGES[0], location, {})
        server["status"] = "running"
        self.resources["servers"][server_id] = server
        return server

    def add_floating_ip(self, fip_id: int, ip: str, server: int | None, location: str = "fsn1") -> JSON:
        self.floating_ipv4.hold(ip)
        fip = {
            "id": fip_id,
            "name": f"fip-{fip_id}",
            "description": "nanogridata VIP",
            "ip": ip,
            "type": "ipv6" if ":" in ip else "ipv4",
            "server": server,
            "dns_ptr": [{"ip": ip, "dns_ptr": "static.example.invalid"}],
            "home_location": catalog.location(location),
            "blocked": False,
            "protection": {"delete": False},
            "labels": {},
            "created": iso(self.clock()),
        }
        self.resources["floating_ips"][fip_id] = fip
        return fip

    def snapshot(self) -> JSON:
        """Everything a restarted twin needs to answer as before (JSON-serializable). Actions are
        kept as records; one still running is saved as it will end, its effect already applied."""
        self.refresh()
        now = self.clock()
        return {
            "version": 1,
            "resources": {name: list(items.values()) for name, items in self.resources.items()},
            "user_data": {str(k): v for k, v in self.user_data.items()},
            "server_keys": {str(k): v for k, v in self.server_keys.items()},
            "next_ids": self.next_ids,
            "ipv6_next": self.ipv6_next,
            "actions": [a.to_json(now) | {"fail": a.fail} for a in self.actions.values()],
        }

    def restore(self, snapshot: JSON) -> None:
        """Load what snapshot() returned (the state file of a previous run)."""
        if snapshot.get("version") != 1:
            raise ValueError(f"unknown state file version {snapshot.get('version')!r} (expected 1)")
        for name in COLLECTIONS:
            self.resources[name] = {int(r["id"]): r for r in snapshot["resources"].get(name, [])}
        self.user_data = {int(k): v for k, v in snapshot["user_data"].items()}
        self.server_keys = {int(k): v for k, v in snapshot["server_keys"].items()}
        self.next_ids = {str(k): int(v) for k, v in snapshot["next_ids"].items()}
        self.ipv6_next = int(snapshot["ipv6_next"])
        for server in self.resources["servers"].values():
            if server["status"] == "initializing":  # its create action ended while we were down
                server["status"] = "running"
        for record in self.resources["floating_ips"].values():
            if record["type"] == "ipv4":
                self.floating_ipv4.hold(record["ip"])
        for record in self.resources["primary_ips"].values():
            if record["type"] == "ipv4":
                self.ipv4.hold(record["ip"])
        self.actions = {}
        for raw in snapshot["actions"]:
            started = datetime.fromisoformat(raw["started"]).timestamp()
            action = Action(raw["id"], raw["command"], raw["resources"], started, 0.0, bool(raw["fail"]))
            action.finished = started
            self.actions[action.id] = action

    def counts(self) -> dict[str, int]:
        """How many of each resource the project holds (an empty project: all zero)."""
        return {name: len(items) for name, items in self.resources.items()}

    def inject(self, endpoint: str, status: int, times: int = 1) -> None:
        """The next ``times`` requests to route ``endpoint`` answer ``status`` (0: dropped)."""
        if not re.fullmatch(r"[a-z_]+", endpoint):
            raise ValueError(f"endpoint must be a route name such as get_floating_ip, not {endpoint!r}")
        if status != 0 and status not in FAULT_CODES:
            raise ValueError(f"status must be 0 or one of {sorted(FAULT_CODES)}, not {status}")
        self.faults.append(Fault(endpoint, status, times))

    def refresh(self) -> None:
        now = self.clock()
        for action in list(self.actions.values()):
            self._refresh_action(action, now)

    def _refresh_action(self, action: Action, now: float) -> None:
        if action.finished is not None:
            return
        action.refresh(now)
        if action.finished is not None:
            self.changed = True
            if action.status == "success":
                event = action.to_json(now)
                for listener in self.listeners:
                    listener(event)

    # -- the request entry point -------------------------------------------------------------
    def handle(self, method: str, path: str, query: str, body: bytes, auth: str | None) -> Answer:
        self.refresh()
        path = path.rstrip("/")
        if path.startswith("/_twin/"):
            answer = self._control(method, path, body)
        else:
            answer = self._api(method, path, parse_qs(query, keep_blank_values=True), body, auth)
        self.requests.append((method, path, answer.status))
        if method in ("POST", "PUT", "DELETE") and 200 <= answer.status < 300:
            self.changed = True
        answer.headers.update(self._rate_headers(limited=answer.status == 429))
        return answer

    def _api(self, method: str, path: str, query: dict[str, list[str]], body: bytes, auth: str | None) -> Answer:
        if auth != f"Bearer {self.token}":
            return Answer(401, ApiError("unauthorized").body())
        parts = path.split("/")[1:]
        if not parts or parts[0] != "v1" or len(parts) < 2:
            return Answer(404, ApiError("not_found", f"no route for {method} {path}").body())
        parts = parts[1:]
        name = self.route_name(method, parts)
        if name is None:
            return Answer(404, ApiError("not_found", f"no route for {method} {path}").body())
        for fault in self.faults:
            if fault.endpoint == name and fault.times > 0:
                fault.times -= 1
                if fault.status == 0:
                    return Answer(0, None)
                return Answer(fault.status, ApiError(FAULT_CODES[fault.status]).body())
        try:
            request: Any = None
            if method in ("POST", "PUT"):
                try:
                    request = json.loads(body or b"{}")
                except ValueError:
                    raise ApiError("json_error") from None
                if not isinstance(request, dict):
                    raise ApiError("json_error", "the request body must be a JSON object")
            status, payload = self._route(method, parts, query, request)
        except ApiError as exc:
            return Answer(exc.status, exc.body())
        return Answer(status, payload)

    @staticmethod
    def route_name(method: str, parts: list[str]) -> str | None:
        """The route's name, used to inject faults: list_servers, get_server, create_server,
        update_server, delete_server, <action>_<singular> (assign_floating_ip), get_action, ..."""
        coll = parts[0]
        if coll == "actions":
            return {1: "list_actions", 2: "get_action"}.get(len(parts)) if method == "GET" else None
        singular = COLLECTIONS.get(coll) or (CATALOG[coll][0] if coll in CATALOG else None)
        if singular is None:
            return None
        if len(parts) == 1:
            return {"GET": f"list_{coll}", "POST": f"create_{singular}"}.get(method)
        if parts[1] == "actions":
            return f"get_{singular}_action" if len(parts) == 3 else f"list_{singular}_actions"
        if len(parts) == 2:
            return {"GET": f"get_{singular}", "PUT": f"update_{singular}", "DELETE": f"delete_{singular}"}.get(method)
        if len(parts) == 3 and parts[2] == "actions":
            return f"list_{singular}_actions"
        if len(parts) == 4 and parts[2] == "actions" and method == "POST":
            return f"{parts[3]}_{singular}"
        return None

    def _route(self, method: str, parts: list[str], query: dict[str, list[str]], request: Any) -> tuple[int, JSON]:
        coll = parts[0]
        if coll == "actions":
            if len(parts) == 1:
                return 200, self._list_actions(query, None)
            return 200, {"action": self._action(_int_id(parts[1])).to_json(self.clock())}
        if coll in CATALOG:
            return self._catalog(coll, parts, query)
        singular = COLLECTIONS[coll]
        if parts[1:2] == ["actions"]:
            if len(parts) == 2:
                return 200, self._list_actions(query, singular)
            action = self._action(_int_id(parts[2]))
            if not any(r["type"] == singular for r in action.resources):
                raise ApiError("not_found", f"action with ID {action.id} not found")
            return 200, {"action": action.to_json(self.clock())}
        if len(parts) == 1:
            if method == "GET":
                return 200, self._list(coll, [self.render(coll, r) for r in self.resources[coll].values()], query)
            if method == "POST":
                creator: Callable[[JSON], tuple[int, JSON]] = getattr(self, f"_create_{singular}")
                return creator(request)
            raise ApiError("method_not_allowed")
        rid = _int_id(parts[1])
        record = self.resources[coll].get(rid)
        if record is None:
            raise ApiError("not_found", f"{singular} with ID {rid} not found")
        if len(parts) == 2:
            if method == "GET":
                return 200, {singular: self.render(coll, record)}
            if method == "PUT":
                return 200, {singular: self._update(coll, record, request)}
            if method == "DELETE":
                return self._delete(coll, record)
        if len(parts) == 3 and method == "GET":
            return 200, self._list_actions(query, singular, rid)
        if len(parts) == 4 and method == "POST":
            handler = getattr(self, f"_act_{singular}_{parts[3]}", None)
            if handler is None:
                raise ApiError("not_found", f"no action {parts[3]!r} for {coll}")
            self._check_unlocked(singular, rid)
            status, payload = handler(record, request)
            return status, payload
        raise ApiError("method_not_allowed")

    # -- lists ----------------------------------------------------------------------------------
    def _list(self, coll: str, items: list[JSON], query: dict[str, list[str]]) -> JSON:
        if "name" in query:
            items = [i for i in items if i.get("name") == query["name"][0]]
        if "label_selector" in query:
            try:
                match = selector(query["label_selector"][0])
            except SelectorError as exc:
                raise invalid("label_selector", str(exc)) from None
            items = [i for i in items if match(i.get("labels") or {})]
        for key in ("type", "architecture", "status", "ip"):
            if key in query and coll in ("images", "primary_ips", "floating_ips", "servers"):
                wanted = set(query[key])
                items = [i for i in items if i.get(key) in wanted]
        if coll == "images" and query.get("include_deprecated", ["false"])[0] != "true":
            items = [i for i in items if not i.get("deprecated")]
        sort = query.get("sort", ["id:asc"])[0]
        key, _, order = sort.partition(":")
        if key in ("id", "name", "created"):
            items.sort(key=lambda i: str(i.get(key)) if key != "id" else i["id"], reverse=order == "desc")
        return self._page(coll, items, query)

    @staticmethod
    def _page(key: str, items: list[JSON], query: dict[str, list[str]]) -> JSON:
        try:
            page = int(query.get("page", ["1"])[0])
            per_page = int(query.get("per_page", ["25"])[0])
        except ValueError:
            raise invalid("page", "page and per_page must be integers") from None
        if page < 1 or not 1 <= per_page <= 50:
            raise invalid("per_page", "page must be >= 1 and per_page between 1 and 50")
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        return {
            key: chunk,
            "meta": {
                "pagination": {
                    "page": page,
                    "per_page": per_page,
                    "previous_page": page - 1 if page > 1 else None,
                    "next_page": page + 1 if page < last else None,
                    "last_page": last,
                    "total_entries": len(items),
                }
            },
        }

    def _catalog(self, coll: str, parts: list[str], query: dict[str, list[str]]) -> tuple[int, JSON]:
        singular, items = CATALOG[coll]
        if len(parts) == 1:
            return 200, self._list(coll, copy.deepcopy(items), query)
        if len(parts) == 2:
            rid = _int_id(parts[1])
            for item in items:
                if item["id"] == rid:
                    return 200, {singular: copy.deepcopy(item)}
            raise ApiError("not_found", f"{singular} with ID {rid} not found")
        raise ApiError("not_found", f"no route for {'/'.join(parts)}")

    # -- actions -------------------------------------------------------------------------------
    def _action(self, action_id: int) -> Action:
        action = self.actions.get(action_id)
        if action is None:
            raise ApiError("not_found", f"action with ID {action_id} not found")
        return action

    def _list_actions(self, query: dict[str, list[str]], kind: str | None, rid: int | None = None) -> JSON:
        actions = list(self.actions.values())
        if "id" in query:
            ids = {_int_id(i) for i in query["id"]}
            actions = [a for a in actions if a.id in ids]
        if kind is not None:
            actions = [a for a in actions if any(r["type"] == kind and rid in (None, r["id"]) for r in a.resources)]
        if "status" in query:
            actions = [a for a in actions if a.status in query["status"]]
        now = self.clock()
        return self._page("actions", [a.to_json(now) for a in actions], query)

    def _check_unlocked(self, kind: str, rid: int) -> None:
        for action in self.actions.values():
            if action.status == "running" and action.resources and action.resources[0] == {"id": rid, "type": kind}:
                raise ApiError("locked")

    def start_action(
        self,
        command: str,
        resources: list[tuple[str, int]],
        effect: Callable[[], None] | None = None,
        finish: Callable[[], None] | None = None,
    ) -> Action:
        """A new action; the first resource is the one it locks until it finishes.

        ``effect`` changes what the API shows at once, as the real API does (the provider reads a
        floating IP's server right after the assign call, without waiting for the action);
        ``finish`` runs when the action succeeds (a server's status after create/power actions).
        An action that will fail (injected) has neither applied."""
        fail = self.fail_next_actions > 0
        if fail:
            self.fail_next_actions -= 1
        elif effect is not None:
            effect()
        action_id = self.next_ids["actions"]
        self.next_ids["actions"] += 1
        action = Action(
            id=action_id,
            command=command,
            resources=[{"id": rid, "type": kind} for kind, rid in resources],
            started=self.clock(),
            seconds=self.action_seconds,
            fail=fail,
            finish=finish,
        )
        self.actions[action_id] = action
        self._refresh_action(action, self.clock())  # a zero-second action finishes at once
        return action

    def _action_answer(self, action: Action, status: int = 201) -> tuple[int, JSON]:
        return status, {"action": action.to_json(self.clock())}

    # -- generic update / delete --------------------------------------------------------------
    def _update(self, coll: str, record: JSON, request: JSON) -> JSON:
        if "name" in request and request["name"] not in (None, ""):
            self._check_name(coll, request["name"], record["id"])
            record["name"] = request["name"]
        if "labels" in request and request["labels"] is not None:
            _check_labels(request["labels"])
            record["labels"] = dict(request["labels"])
        if coll == "floating_ips" and request.get("description") is not None:
            record["description"] = request["description"]
        if coll == "primary_ips" and request.get("auto_delete") is not None:
            record["auto_delete"] = bool(request["auto_delete"])
        return self.render(coll, record)

    def _delete(self, coll: str, record: JSON) -> tuple[int, JSON]:
        singular = COLLECTIONS[coll]
        if record.get("protection", {}).get("delete"):
            raise ApiError("protected", f"{singular} {record['id']} has delete protection enabled")
        # A running action does not block a delete: the provider deletes a floating IP right after
        # an unassign it does not wait for, and that works against the real API.
        rid = record["id"]
        if coll == "servers":
            return self._delete_server(record)
        if coll == "firewalls" and record["applied_to"]:
            raise ApiError("resource_in_use", f"firewall {rid} is still applied to resources")
        if coll == "primary_ips" and record["assignee_id"] is not None:
            raise ApiError("resource_in_use", f"primary IP {rid} is still assigned to server {record['assignee_id']}")
        if coll == "placement_groups" and self._servers_where(lambda s: s["placement_group"] == rid):
            raise ApiError("resource_in_use", f"placement group {rid} still has servers")  # interpretation
        if coll == "networks":
            for server in self.resources["servers"].values():  # interpretation: attached servers are detached
                server["private_net"] = [n for n in server["private_net"] if n["network"] != rid]
        if coll == "floating_ips":
            self.floating_ipv4.release(record["ip"])
        if coll == "primary_ips" and record["type"] == "ipv4":
            self.ipv4.release(record["ip"])
        del self.resources[coll][rid]
        return 204, {}

    def _servers_where(self, predicate: Callable[[JSON], bool]) -> list[JSON]:
        return [s for s in self.resources["servers"].values() if predicate(s)]

    def _check_name(self, coll: str, name: object, own_id: int | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise invalid("name", "Missing data for required field.")
        if coll == "servers" and not _HOSTNAME.match(name):
            raise invalid("name", "must be a valid hostname (RFC 1123)")
        for other in self.resources[coll].values():
            if other["name"] == name and other["id"] != own_id:
                raise ApiError("uniqueness_error", "name is already used", {"name": "name is already used"})

    def _protection_action(self, coll: str, record: JSON, request: JSON, keys: tuple[str, ...]) -> tuple[int, JSON]:
        singular = COLLECTIONS[coll]
        wanted = {k: request[k] for k in keys if request.get(k) is not None}
        for key, value in wanted.items():
            if not isinstance(value, bool):
                raise invalid(key, "must be a boolean")

        def apply() -> None:
            record["protection"].update(wanted)

        return self._action_answer(self.start_action("change_protection", [(singular, record["id"])], apply))

    # -- rendering: relationship fields are derived from state, never stored twice ---------------
    def render(self, coll: str, record: JSON) -> JSON:
        out = copy.deepcopy(record)
        rid = record["id"]
        if coll == "servers":
            out["public_net"]["floating_ips"] = sorted(
                f["id"] for f in self.resources["floating_ips"].values() if f["server"] == rid
            )
            out["public_net"]["firewalls"] = [
                {"id": fw["id"], "status": "applied"}
                for fw in self.resources["firewalls"].values()
                if any(a.get("server", {}).get("id") == rid for a in fw["applied_to"])
            ]
            pg = self.resources["placement_groups"].get(record["placement_group"] or 0)
            out["placement_group"] = self.render("placement_groups", pg) if pg else None
        elif coll == "networks":
            out["servers"] = sorted(
                s["id"] for s in self.resources["servers"].values() if any(n["network"] == rid for n in s["private_net"])
            )
        elif coll == "placement_groups":
            out["servers"] = sorted(s["id"] for s in self._servers_where(lambda s: s["placement_group"] == rid))
        return out

    # -- SSH keys ------------------------------------------------------------------------------
    def _create_ssh_key(self, request: JSON) -> tuple[int, JSON]:
        self._check_name("ssh_keys", request.get("name"))
        public_key = request.get("public_key")
        if not isinstance(public_key, str):
            raise invalid("public_key", "Missing data for required field.")
        fingerprint = _fingerprint(public_key)
        if any(k["fingerprint"] == fingerprint for k in self.resources["ssh_keys"].values()):
            raise ApiError("uniqueness_error", "SSH key with the same fingerprint already exists", {"public_key": "not unique"})
        labels = _check_labels(request.get("labels") or {})
        key = {
            "id": self._new_id("ssh_keys"),
            "name": request["name"],
            "fingerprint": fingerprint,
            "public_key": public_key.strip(),
            "labels": labels,
            "created": iso(self.clock()),
        }
        self.resources["ssh_keys"][key["id"]] = key
        return 201, {"ssh_key": copy.deepcopy(key)}

    # -- placement groups --------------------------------------------------------------------
    def _create_placement_group(self, request: JSON) -> tuple[int, JSON]:
        self._check_name("placement_groups", request.get("name"))
        if request.get("type") != "spread":
            raise invalid("type", "must be one of: spread")
        group = {
            "id": self._new_id("placement_groups"),
            "name": request["name"],
            "type": "spread",
            "labels": _check_labels(request.get("labels") or {}),
            "created": iso(self.clock()),
            "servers": [],
        }
        self.resources["placement_groups"][group["id"]] = group
        return 201, {"placement_group": self.render("placement_groups", group), "action": None}

    # -- networks ------------------------------------------------------------------------------
    def _create_network(self, request: JSON) -> tuple[int, JSON]:
        self._check_name("networks", request.get("name"))
        ip_range = _network(request.get("ip_range"), "ip_range")
        if not ip_range.is_private or ip_range.version != 4:
            raise invalid("ip_range", "must be a private IPv4 range (RFC 1918)")
        network = {
            "id": self._new_id("networks"),
            "name": request["name"],
            "ip_range": str(ip_range),
            "subnets": [],
            "routes": [],
            "servers": [],
            "load_balancers": [],
            "protection": {"delete": False},
            "labels": _check_labels(request.get("labels") or {}),
            "created": iso(self.clock()),
            "expose_routes_to_vswitch": bool(request.get("expose_routes_to_vswitch", False)),
        }
        for subnet in request.get("subnets") or []:
            network["subnets"].append(self._subnet(network, subnet))
        for route in request.get("routes") or []:
            network["routes"].append(self._route_entry(network, route))
        self.resources["networks"][network["id"]] = network
        return 201, {"network": self.render("networks", network)}

    def _subnet(self, network: JSON, request: JSON) -> JSON:
        if request.get("type") not in ("cloud", "server", "vswitch"):
            raise invalid("type", "must be one of: cloud, server, vswitch")
        zones = {loc["network_zone"] for loc in catalog.LOCATIONS}
        if request.get("network_zone") not in zones:
            raise invalid("network_zone", f"must be one of: {', '.join(sorted(zones))}")
        subnet = _network(request.get("ip_range"), "ip_range")
        parent = ipaddress.ip_network(network["ip_range"])
        if subnet.version != 4 or not subnet.subnet_of(parent):  # type: ignore[arg-type]
            raise invalid("ip_range", f"{subnet} is not inside the network's range {parent}")
        for other in network["subnets"]:
            if subnet.overlaps(ipaddress.ip_network(other["ip_range"])):
                raise invalid("ip_range", f"{subnet} overlaps the subnet {other['ip_range']}")
        return {
            "type": request["type"],
            "ip_range": str(subnet),
            "network_zone": request["network_zone"],
            "gateway": str(next(parent.hosts())),
        }

    @staticmethod
    def _route_entry(network: JSON, request: JSON) -> JSON:
        destination = _network(request.get("destination"), "destination")
        gateway = request.get("gateway")
        try:
            gw = ipaddress.ip_address(gateway)  # type: ignore[arg-type]
        except ValueError:
            raise invalid("gateway", "must be an IP address") from None
        if gw not in ipaddress.ip_network(network["ip_range"]):
            raise invalid("gateway", "must be inside the network's range")
        return {"destination": str(destination), "gateway": str(gw)}

    def _act_network_add_subnet(self, network: JSON, request: JSON) -> tuple[int, JSON]:
        subnet = self._subnet(network, request)
        return self._action_answer(
            self.start_action("add_subnet", [("network", network["id"])], lambda: network["subnets"].append(subnet))
        )

    def _act_network_delete_subnet(self, network: JSON, request: JSON) -> tuple[int, JSON]:
        target = str(_network(request.get("ip_range"), "ip_range"))
        if not any(s["ip_range"] == target for s in network["subnets"]):
            raise ApiError("not_found", f"subnet {target} not found")
        for server in self.resources["servers"].values():
            for net in server["private_net"]:
                if net["network"] == network["id"] and ipaddress.ip_address(net["ip"]) in ipaddress.ip_network(target):
                    raise ApiError("resource_in_use", f"server {server['id']} is attached to subnet {target}")

        def apply() -> None:
            network["subnets"] = [s for s in network["subnets"] if s["ip_range"] != target]

        return self._action_answer(self.start_action("delete_subnet", [("network", network["id"])], apply))

    def _act_network_add_route(self, network: JSON, request: JSON) -> tuple[int, JSON]:
        route = self._route_entry(network, request)
        return self._action_answer(
            self.start_action("add_route", [("network", network["id"])], lambda: network["routes"].append(route))
        )

    def _act_network_delete_route(self, network: JSON, request: JSON) -> tuple[int, JSON]:
        route = self._route_entry(network, request)
        if route not in network["routes"]:
            raise ApiError("not_found", "route not found")
        return self._action_answer(
            self.start_action("delete_route", [("network", network["id"])], lambda: network["routes"].remove(route))
        )

    def _act_network_change_ip_range(self, network: JSON, request: JSON) -> tuple[int, JSON]:
        new = _network(request.get("ip_range"), "ip_range")
        old = ipaddress.ip_network(network["ip_range"])
        if not old.subnet_of(new):  # type: ignore[arg-type]
            raise invalid("ip_range", "the range can only be extended")

        def apply() -> None:
            network["ip_range"] = str(new)

        return self._action_answer(self.start_action("change_ip_range", [("network", network["id"])], apply))

    def _act_network_change_protection(self, network: JSON, request: JSON) -> tuple[int, JSON]:
        return self._protection_action("networks", network, request, ("delete",))

    # -- firewalls -----------------------------------------------------------------------------
    def _create_firewall(self, request: JSON) -> tuple[int, JSON]:
        self._check_name("firewalls", request.get("name"))
        rules = [_rule(r) for r in request.get("rules") or []]
        firewall = {
            "id": self._new_id("firewalls"),
            "name": request["name"],
            "labels": _check_labels(request.get("labels") or {}),
            "created": iso(self.clock()),
            "rules": rules,
            "applied_to": [],
        }
        targets = self._firewall_targets(firewall, request.get("apply_to") or [], applying=True)
        self.resources["firewalls"][firewall["id"]] = firewall
        actions = [self._apply_firewall(firewall, target) for target in targets]
        now = self.clock()
        return 201, {"firewall": self.render("firewalls", firewall), "actions": [a.to_json(now) for a in actions]}

    def _firewall_targets(self, firewall: JSON, resources: list[Any], applying: bool) -> list[JSON]:
        targets = []
        for resource in resources:
            if not isinstance(resource, dict) or resource.get("type") not in ("server", "label_selector"):
                raise invalid("apply_to", "type must be server or label_selector")
            if resource["type"] == "server":
                sid = (resource.get("server") or {}).get("id")
                if sid not in self.resources["servers"]:
                    raise ApiError("firewall_resource_not_found", f"server {sid} not found")
                target: JSON = {"type": "server", "server": {"id": sid}}
            else:
                text = (resource.get("label_selector") or {}).get("selector")
                try:
                    selector(str(text))
                except SelectorError as exc:
                    raise invalid("label_selector", str(exc)) from None
                target = {"type": "label_selector", "label_selector": {"selector": text}}
            present = target in firewall["applied_to"]
            if applying and present:
                raise ApiError("firewall_already_applied")
            if not applying and not present:
                raise ApiError("firewall_already_removed")
            targets.append(target)
        return targets

    def _apply_firewall(self, firewall: JSON, target: JSON) -> Action:
        firewall["applied_to"].append(target)  # the API lists a pending application at once
        resources = [("firewall", firewall["id"])]
        if target["type"] == "server":
            resources.append(("server", target["server"]["id"]))
        return self.start_action("apply_firewall", resources)

    def _act_firewall_set_rules(self, firewall: JSON, request: JSON) -> tuple[int, JSON]:
        if not isinstance(request.get("rules"), list):
            raise invalid("rules", "Missing data for required field.")
        rules = [_rule(r) for r in request["rules"]]

        def apply() -> None:
            firewall["rules"] = rules

        action = self.start_action("set_firewall_rules", [("firewall", firewall["id"])], apply)
        return 201, {"actions": [action.to_json(self.clock())]}

    def _act_firewall_apply_to_resources(self, firewall: JSON, request: JSON) -> tuple[int, JSON]:
        targets = self._firewall_targets(firewall, request.get("apply_to") or [], applying=True)
        now = self.clock()
        return 201, {"actions": [self._apply_firewall(firewall, t).to_json(now) for t in targets]}

    def _act_firewall_remove_from_resources(self, firewall: JSON, request: JSON) -> tuple[int, JSON]:
        targets = self._firewall_targets(firewall, request.get("remove_from") or [], applying=False)
        actions = []
        for target in targets:
            firewall["applied_to"].remove(target)
            resources = [("firewall", firewall["id"])]
            if target["type"] == "server":
                resources.append(("server", target["server"]["id"]))
            actions.append(self.start_action("remove_firewall", resources))
        now = self.clock()
        return 201, {"actions": [a.to_json(now) for a in actions]}

    # -- floating IPs --------------------------------------------------------------------------
    def _create_floating_ip(self, request: JSON) -> tuple[int, JSON]:
        if request.get("type") not in ("ipv4", "ipv6"):
            raise invalid("type", "must be one of: ipv4, ipv6")
        server_id = request.get("server")
        home = request.get("home_location")
        if server_id is not None:
            server = self.resources["servers"].get(server_id)
            if server is None:
                raise invalid("server", f"server {server_id} not found")
            home = server["datacenter"]["location"]["name"]
        if home is None:
            raise invalid("home_location", "home_location or server is required")
        where = catalog.location(str(home))
        if where is None:
            raise invalid("home_location", f"location {home!r} not found")
        fid = self._new_id("floating_ips")
        name = request.get("name") or f"floating_ip-{fid}"  # interpretation: the API's default name
        self._check_name("floating_ips", name)
        ip = self.floating_ipv4.take() if request["type"] == "ipv4" else f"{self._ipv6_block()}/64"
        fip = {
            "id": fid,
            "name": name,
            "description": request.get("description"),
            "ip": ip,
            "type": request["type"],
            "server": None,
            "dns_ptr": [{"ip": ip.split("/")[0], "dns_ptr": f"static.{ip.split('/')[0]}.clients.your-server.de"}],
            "home_location": where,
            "blocked": False,
            "protection": {"delete": False},
            "labels": _check_labels(request.get("labels") or {}),
            "created": iso(self.clock()),
        }
        self.resources["floating_ips"][fid] = fip
        action = None
        if server_id is not None:
            action = self._assign(fip, server_id).to_json(self.clock())
        return 201, {"floating_ip": copy.deepcopy(fip), "action": action}

    def _assign(self, fip: JSON, server_id: int | None) -> Action:
        def apply() -> None:
            fip["server"] = server_id

        if server_id is None:
            return self.start_action("unassign_floating_ip", [("floating_ip", fip["id"])], apply)
        return self.start_action("assign_floating_ip", [("floating_ip", fip["id"]), ("server", server_id)], apply)

    def _act_floating_ip_assign(self, fip: JSON, request: JSON) -> tuple[int, JSON]:
        server = request.get("server")
        if not isinstance(server, int) or isinstance(server, bool):
            raise invalid("server", "Missing data for required field.")
        if server not in self.resources["servers"]:
            raise invalid("server", f"server {server} not found")
        if fip["server"] == server:
            raise ApiError("floating_ip_assigned")
        location = self.resources["servers"][server]["datacenter"]["location"]["name"]
        if location != fip["home_location"]["name"]:  # interpretation: the API allows only the home location
            raise invalid("server", f"server {server} is in {location}, the floating IP's home is another location")
        return self._action_answer(self._assign(fip, server))

    def _act_floating_ip_unassign(self, fip: JSON, request: JSON) -> tuple[int, JSON]:
        return self._action_answer(self._assign(fip, None))

    def _act_floating_ip_change_protection(self, fip: JSON, request: JSON) -> tuple[int, JSON]:
        return self._protection_action("floating_ips", fip, request, ("delete",))

    def _act_floating_ip_change_dns_ptr(self, fip: JSON, request: JSON) -> tuple[int, JSON]:
        ip, ptr = request.get("ip"), request.get("dns_ptr")

        def apply() -> None:
            fip["dns_ptr"] = [d for d in fip["dns_ptr"] if d["ip"] != ip] + ([{"ip": ip, "dns_ptr": ptr}] if ptr else [])

        return self._action_answer(self.start_action("change_dns_ptr", [("floating_ip", fip["id"])], apply))

    # -- primary IPs ---------------------------------------------------------------------------
    def _ipv6_block(self) -> str:
        base = int(self.ipv6_net.network_address) + (self.ipv6_next << 80)
        self.ipv6_next += 1
        return str(ipaddress.ip_address(base))

    def _primary_ip(self, name: str, kind: str, datacenter: JSON, assignee: int | None, auto_delete: bool, labels: JSON) -> JSON:
        ip = self.ipv4.take() if kind == "ipv4" else f"{self._ipv6_block()}/64"
        pid = self._new_id("primary_ips")
        record = {
            "id": pid,
            "name": name or f"primary_ip-{pid}",
            "ip": ip,
            "type": kind,
            "labels": labels,
            "protection": {"delete": False},
            "dns_ptr": [{"ip": ip.split("/")[0], "dns_ptr": f"static.{ip.split('/')[0]}.clients.your-server.de"}],
            "assignee_id": assignee,
            "assignee_type": "server",
            "auto_delete": auto_delete,
            "blocked": False,
            "created": iso(self.clock()),
            "datacenter": copy.deepcopy(datacenter),
            "location": copy.deepcopy(datacenter["location"]),
        }
        self.resources["primary_ips"][pid] = record
        return record

    def _create_primary_ip(self, request: JSON) -> tuple[int, JSON]:
        self._check_name("primary_ips", request.get("name"))
        if request.get("type") not in ("ipv4", "ipv6"):
            raise invalid("type", "must be one of: ipv4, ipv6")
        if request.get("assignee_type", "server") != "server":  # hcloud-python 2.x leaves it out
            raise invalid("assignee_type", "must be server")
        assignee = request.get("assignee_id")
        if assignee is not None:
            server = self.resources["servers"].get(assignee)
            if server is None:
                raise invalid("assignee_id", f"server {assignee} not found")
            datacenter = server["datacenter"]
        else:
            # The API took a datacenter before 2026 and takes a location since; both are accepted.
            datacenter = next(
                (
                    d
                    for d in catalog.DATACENTERS
                    if request.get("datacenter") == d["name"] or request.get("location") == d["location"]["name"]
                ),
                None,
            )
            if datacenter is None:
                raise invalid("location", "location (or datacenter) or assignee_id is required")
        record = self._primary_ip(
            request["name"],
            request["type"],
            datacenter,
            None,
            bool(request.get("auto_delete", False)),
            _check_labels(request.get("labels") or {}),
        )
        action = None
        if assignee is not None:
            action = self._primary_assign(record, assignee).to_json(self.clock())
        return 201, {"primary_ip": copy.deepcopy(record), "action": action}

    def _primary_assign(self, record: JSON, server_id: int | None) -> Action:
        def apply() -> None:
            old = record["assignee_id"]
            record["assignee_id"] = server_id
            for sid in (old, server_id):
                server = self.resources["servers"].get(sid or 0)
                if server is not None:
                    self._sync_public_net(server)

        command = "assign_primary_ip" if server_id is not None else "unassign_primary_ip"
        return self.start_action(command, [("primary_ip", record["id"])] + ([("server", server_id)] if server_id else []), apply)

    def _act_primary_ip_assign(self, record: JSON, request: JSON) -> tuple[int, JSON]:
        sid = request.get("assignee_id")
        server = self.resources["servers"].get(sid) if isinstance(sid, int) else None
        if server is None:
            raise invalid("assignee_id", f"server {sid} not found")
        if record["assignee_id"] is not None:
            raise ApiError("resource_in_use", "primary IP is already assigned")  # the API: primary_ip_assigned
        if server["status"] != "off":
            raise ApiError("server_not_stopped")
        return self._action_answer(self._primary_assign(record, sid))

    def _act_primary_ip_unassign(self, record: JSON, request: JSON) -> tuple[int, JSON]:
        server = self.resources["servers"].get(record["assignee_id"] or 0)
        if server is not None and server["status"] != "off":
            raise ApiError("server_not_stopped")
        return self._action_answer(self._primary_assign(record, None))

    def _act_primary_ip_change_protection(self, record: JSON, request: JSON) -> tuple[int, JSON]:
        return self._protection_action("primary_ips", record, request, ("delete",))

    def _sync_public_net(self, server: JSON) -> None:
        for kind in ("ipv4", "ipv6"):
            ip = next(
                (p for p in self.resources["primary_ips"].values() if p["assignee_id"] == server["id"] and p["type"] == kind),
                None,
            )
            if ip is None:
                server["public_net"][kind] = None
            elif kind == "ipv4":
                server["public_net"]["ipv4"] = {
                    "id": ip["id"],
                    "ip": ip["ip"],
                    "blocked": False,
                    "dns_ptr": ip["dns_ptr"][0]["dns_ptr"],
                }
            else:
                server["public_net"]["ipv6"] = {"id": ip["id"], "ip": ip["ip"], "blocked": False, "dns_ptr": []}

    # -- servers -------------------------------------------------------------------------------
    def _server_record(self, sid: int, name: str, server_type: JSON, image: JSON, location: str, labels: JSON) -> JSON:
        datacenter = catalog.datacenter_of(location)
        return {
            "id": sid,
            "name": name,
            "status": "initializing",
            "created": iso(self.clock()),
            "public_net": {"ipv4": None, "ipv6": None, "floating_ips": [], "firewalls": []},
            "private_net": [],
            "server_type": copy.deepcopy(server_type),
            "datacenter": copy.deepcopy(datacenter),
            "location": copy.deepcopy(datacenter["location"]),
            "image": copy.deepcopy(image),
            "iso": None,
            "rescue_enabled": False,
            "locked": False,
            "backup_window": None,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": 21990232555520,
            "protection": {"delete": False, "rebuild": False},
            "labels": labels,
            "volumes": [],
            "load_balancers": [],
            "primary_disk_size": server_type["disk"],
            "placement_group": None,
        }

    def _lookup(self, items: list[JSON], value: object, field_name: str) -> JSON:
        for item in items:
            if value in (item["id"], item["name"]) or (isinstance(value, str) and value == str(item["id"])):
                return item
        raise invalid(field_name, f"{field_name} {value!r} not found")

    def _create_server(self, request: JSON) -> tuple[int, JSON]:
        self._check_name("servers", request.get("name"))
        server_type = self._lookup(catalog.SERVER_TYPES, request.get("server_type"), "server_type")
        if request.get("datacenter"):
            datacenter = self._lookup(catalog.DATACENTERS, request["datacenter"], "datacenter")
            location = datacenter["location"]["name"]
        else:
            location = request.get("location") or "fsn1"
            if catalog.location(str(location)) is None:
                raise invalid("location", f"location {location!r} not found")
        if not catalog.is_orderable(server_type, str(location)):
            raise ApiError(
                "invalid_server_type",
                f"server type {server_type['name']} is deprecated or not available in {location}",
            )
        image = self._lookup(
            [i for i in catalog.IMAGES if i["architecture"] == server_type["architecture"]]
            if isinstance(request.get("image"), str)
            else catalog.IMAGES,
            request.get("image"),
            "image",
        )
        if image["architecture"] != server_type["architecture"]:
            raise invalid("image", f"image {image['id']} is for {image['architecture']}, not {server_type['architecture']}")
        ssh_keys = [self._lookup(list(self.resources["ssh_keys"].values()), k, "ssh_keys") for k in request.get("ssh_keys") or []]
        user_data = request.get("user_data") or ""
        if not isinstance(user_data, str) or len(user_data.encode()) > MAX_USER_DATA:
            raise invalid("user_data", f"must be a string of at most {MAX_USER_DATA} bytes")
        labels = _check_labels(request.get("labels") or {})
        networks = []
        for nid in request.get("networks") or []:
            network = self.resources["networks"].get(nid)
            if network is None:
                raise invalid("networks", f"network {nid} not found")
            networks.append(network)
        firewalls = []
        for entry in request.get("firewalls") or []:
            fid = entry.get("firewall") if isinstance(entry, dict) else None
            if fid not in self.resources["firewalls"]:
                raise invalid("firewalls", f"firewall {fid} not found")
            firewalls.append(self.resources["firewalls"][fid])
        group_id = request.get("placement_group")
        if group_id is not None and group_id not in self.resources["placement_groups"]:
            raise invalid("placement_group", f"placement group {group_id} not found")
        public = request.get("public_net") or {"enable_ipv4": True, "enable_ipv6": True}
        primaries: dict[str, JSON] = {}
        for kind in ("ipv4", "ipv6"):
            pid = public.get(kind)
            if pid is not None:
                primary = self.resources["primary_ips"].get(pid)
                if primary is None or primary["type"] != kind:
                    raise invalid(f"public_net.{kind}", f"primary IP {pid} not found")
                if primary["assignee_id"] is not None:
                    raise ApiError("resource_in_use", f"primary IP {pid} is already assigned")
                primaries[kind] = primary
        if not public.get("enable_ipv4") and not public.get("enable_ipv6") and not networks:
            raise invalid("public_net", "a server without public network must be attached to a network")

        sid = self._new_id("servers")
        server = self._server_record(sid, request["name"], server_type, image, str(location), labels)
        server["placement_group"] = group_id
        attachments = [self._attachment(network, sid, None, []) for network in networks]
        self.resources["servers"][sid] = server
        self.user_data[sid] = user_data
        for kind in ("ipv4", "ipv6"):
            if kind in primaries:
                primaries[kind]["assignee_id"] = sid
            elif public.get(f"enable_{kind}", True):
                self._primary_ip("", kind, server["datacenter"], sid, True, {})
        self._sync_public_net(server)
        server["private_net"] = attachments
        for firewall in firewalls:
            firewall["applied_to"].append({"type": "server", "server": {"id": sid}})
        start = request.get("start_after_create", True)
        self.server_keys[sid] = [k["public_key"] for k in ssh_keys]

        def created() -> None:
            server["status"] = "running" if start else "off"

        action = self.start_action("create_server", [("server", sid)], finish=created)
        now = self.clock()
        return 201, {
            "server": self.render("servers", server),
            "action": action.to_json(now),
            "next_actions": [],
            "root_password": None if ssh_keys else base64.b32encode(hashlib.sha256(str(sid).encode()).digest())[:20].decode(),
        }

    def _attachment(self, network: JSON, sid: int, ip: str | None, alias_ips: list[str]) -> JSON:
        subnets = [s for s in network["subnets"] if s["type"] in ("cloud", "server")]
        if not subnets:
            raise ApiError("no_subnet_available", f"network {network['id']} has no subnet")
        used = {
            n["ip"]
            for s in self.resources["servers"].values()
            for n in s["private_net"]
            if n["network"] == network["id"] and s["id"] != sid
        } | {a for s in self.resources["servers"].values() for n in s["private_net"] for a in n["alias_ips"]}
        if ip is not None:
            address = ipaddress.ip_address(ip)
            if not any(address in ipaddress.ip_network(s["ip_range"]) for s in subnets):
                raise ApiError("ip_not_available", f"{ip} is not inside a subnet of network {network['id']}")
            if ip in used or address == next(ipaddress.ip_network(network["ip_range"]).hosts()):
                raise ApiError("ip_not_available", f"{ip} is already used")
        else:
            net = ipaddress.ip_network(subnets[0]["ip_range"])
            hosts = [str(h) for h in net.hosts()][1:]  # the first host is the network's gateway
            free = [h for h in hosts if h not in used]
            if not free:
                raise ApiError("no_subnet_available", f"no free address in {net}")
            ip = free[0]
        return {
            "network": network["id"],
            "ip": ip,
            "alias_ips": list(alias_ips),
            "mac_address": "86:00:00:" + ":".join(f"{(sid >> s) & 255:02x}" for s in (16, 8, 0)),
        }

    def _delete_server(self, server: JSON) -> tuple[int, JSON]:
        sid = server["id"]

        def gone() -> None:
            self.resources["servers"].pop(sid, None)
            self.user_data.pop(sid, None)
            self.server_keys.pop(sid, None)
            for fip in self.resources["floating_ips"].values():
                if fip["server"] == sid:
                    fip["server"] = None
            for firewall in self.resources["firewalls"].values():
                firewall["applied_to"] = [a for a in firewall["applied_to"] if a.get("server", {}).get("id") != sid]
            for primary in list(self.resources["primary_ips"].values()):
                if primary["assignee_id"] == sid:
                    primary["assignee_id"] = None
                    if primary["auto_delete"]:
                        del self.resources["primary_ips"][primary["id"]]
                        if primary["type"] == "ipv4":
                            self.ipv4.release(primary["ip"])

        server["status"] = "deleting"
        return self._action_answer(self.start_action("delete_server", [("server", sid)], finish=gone), status=200)

    def _power(self, server: JSON, command: str, status: str) -> tuple[int, JSON]:
        def apply() -> None:
            server["status"] = status

        return self._action_answer(self.start_action(command, [("server", server["id"])], finish=apply))

    def _act_server_poweron(self, server: JSON, request: JSON) -> tuple[int, JSON]:
        return self._power(server, "start_server", "running")

    def _act_server_poweroff(self, server: JSON, request: JSON) -> tuple[int, JSON]:
        return self._power(server, "stop_server", "off")

    def _act_server_shutdown(self, server: JSON, request: JSON) -> tuple[int, JSON]:
        return self._power(server, "shutdown_server", "off")

    def _act_server_reboot(self, server: JSON, request: JSON) -> tuple[int, JSON]:
        return self._power(server, "reboot_server", "running")

    def _act_server_reset(self, server: JSON, request: JSON) -> tuple[int, JSON]:
        return self._power(server, "reset_server", "running")

    def _act_server_change_protection(self, server: JSON, request: JSON) -> tuple[int, JSON]:
        return self._protection_action("servers", server, request, ("delete", "rebuild"))

    def _act_server_attach_to_network(self, server: JSON, request: JSON) -> tuple[int, JSON]:
        network = self.resources["networks"].get(request.get("network"))  # type: ignore[arg-type]
        if network is None:
            raise invalid("network", f"network {request.get('network')} not found")
        if any(n["network"] == network["id"] for n in server["private_net"]):
            raise ApiError("server_already_attached")
        attachment = self._attachment(network, server["id"], request.get("ip"), request.get("alias_ips") or [])
        return self._action_answer(
            self.start_action(
                "attach_to_network",
                [("server", server["id"]), ("network", network["id"])],
                lambda: server["private_net"].append(attachment),
            )
        )

    def _act_server_detach_from_network(self, server: JSON, request: JSON) -> tuple[int, JSON]:
        nid = request.get("network")
        if not any(n["network"] == nid for n in server["private_net"]):
            raise ApiError("not_found", f"server {server['id']} is not attached to network {nid}")

        def apply() -> None:
            server["private_net"] = [n for n in server["private_net"] if n["network"] != nid]

        return self._action_answer(
            self.start_action("detach_from_network", [("server", server["id"]), ("network", nid)], apply)  # type: ignore[list-item]
        )

    def _act_server_change_alias_ips(self, server: JSON, request: JSON) -> tuple[int, JSON]:
        nid = request.get("network")
        net = next((n for n in server["private_net"] if n["network"] == nid), None)
        if net is None:
            raise ApiError("not_found", f"server {server['id']} is not attached to network {nid}")
        aliases = list(request.get("alias_ips") or [])
        return self._action_answer(
            self.start_action("change_alias_ips", [("server", server["id"])], lambda: net.update(alias_ips=aliases))
        )

    def _act_server_add_to_placement_group(self, server: JSON, request: JSON) -> tuple[int, JSON]:
        gid = request.get("placement_group")
        if gid not in self.resources["placement_groups"]:
            raise invalid("placement_group", f"placement group {gid} not found")
        if server["status"] != "off":
            raise ApiError("server_not_stopped")
        return self._action_answer(
            self.start_action("add_to_placement_group", [("server", server["id"])], lambda: server.update(placement_group=gid))
        )

    def _act_server_remove_from_placement_group(self, server: JSON, request: JSON) -> tuple[int, JSON]:
        if server["status"] != "off":
            raise ApiError("server_not_stopped")
        return self._action_answer(
            self.start_action(
                "remove_from_placement_group", [("server", server["id"])], lambda: server.update(placement_group=None)
            )
        )

    def _act_server_enable_backup(self, server: JSON, request: JSON) -> tuple[int, JSON]:
        return self._action_answer(
            self.start_action("enable_backup", [("server", server["id"])], lambda: server.update(backup_window="22-02"))
        )

    def _act_server_disable_backup(self, server: JSON, request: JSON) -> tuple[int, JSON]:
        return self._action_answer(
            self.start_action("disable_backup", [("server", server["id"])], lambda: server.update(backup_window=None))
        )

    # -- control (tests and drills; not part of the Hetzner API) --------------------------------
    def _control(self, method: str, path: str, body: bytes) -> Answer:
        """``POST /_twin/faults``: {"endpoint", "status", "times"} and/or {"action_seconds": s}
        and/or {"fail_next_actions": n}. ``GET /_twin/counts``: resources per type.
        No token: the twin listens on loopback (or a private namespace) only."""
        if path == "/_twin/counts" and method == "GET":
            return Answer(200, {"counts": self.counts()})
        if path != "/_twin/faults" or method != "POST":
            return Answer(404, ApiError("not_found", f"no control route {method} {path}").body())
        try:
            request = json.loads(body)
            if "endpoint" in request:
                self.inject(str(request["endpoint"]), int(request["status"]), int(request.get("times", 1)))
            if "action_seconds" in request:
                self.action_seconds = float(request["action_seconds"])
            if "fail_next_actions" in request:
                self.fail_next_actions = int(request["fail_next_actions"])
        except (ValueError, KeyError, TypeError) as exc:
            return Answer(400, ApiError("invalid_input", str(exc)).body())
        return Answer(200, {"ok": True})

    def _rate_headers(self, limited: bool) -> dict[str, str]:
        self.rate_remaining = 0 if limited else max(0, self.rate_remaining - 1)
        missing = RATE_LIMIT - self.rate_remaining
        return {
            "RateLimit-Limit": str(RATE_LIMIT),
            "RateLimit-Remaining": str(self.rate_remaining),
            "RateLimit-Reset": str(int(self.clock()) + missing),
        }


# -- validation helpers ------------------------------------------------------------------------
def _int_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise invalid("id", f"{text!r} is not an integer ID") from None


def _check_labels(labels: object) -> JSON:
    problem = label_problem(labels)
    if problem:
        raise invalid("labels", problem)
    return dict(labels)  # type: ignore[call-overload,no-any-return]


def _network(value: object, field_name: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(str(value), strict=True)
    except ValueError:
        raise invalid(field_name, f"{value!r} is not a network in CIDR notation (host bits must be zero)") from None


def _fingerprint(public_key: str) -> str:
    parts = public_key.strip().split()
    kinds = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-dss")
    if len(parts) < 2 or parts[0] not in kinds:
        raise invalid("public_key", "invalid public key: expected '<type> <base64> [comment]'")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise invalid("public_key", "invalid public key: the key data is not base64") from None
    if not blob.startswith(len(parts[0]).to_bytes(4, "big") + parts[0].encode()):
        raise invalid("public_key", "invalid public key: the key data does not match its type")
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


_PORT = re.compile(r"^(any|\d{1,5}(-\d{1,5})?)$")


def _rule(rule: object) -> JSON:
    if not isinstance(rule, dict):
        raise invalid("rules", "each rule must be an object")
    direction, protocol, port = rule.get("direction"), rule.get("protocol"), rule.get("port")
    if direction not in ("in", "out"):
        raise invalid("rules.direction", "must be one of: in, out")
    if protocol not in ("tcp", "udp", "icmp", "esp", "gre"):
        raise invalid("rules.protocol", "must be one of: tcp, udp, icmp, esp, gre")
    if protocol in ("tcp", "udp"):
        if not isinstance(port, str) or not _PORT.match(port):
            raise invalid("rules.port", "tcp and udp rules need a port: a number, a range 'a-b' or 'any'")
        for number in re.findall(r"\d+", port):
            if not 1 <= int(number) <= 65535:
                raise invalid("rules.port", f"port {number} is out of range")
    elif port is not None:
        raise invalid("rules.port", f"{protocol} rules take no port")
    ips_key = "source_ips" if direction == "in" else "destination_ips"
    ips = rule.get(ips_key) or []
    if not ips:
        raise invalid(f"rules.{ips_key}", f"{direction} rules need {ips_key}")
    for cidr in ips:
        _network(cidr, f"rules.{ips_key}")
    description = rule.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 255):
        raise invalid("rules.description", "at most 255 characters")
    return {
        "direction": direction,
        "protocol": protocol,
        "port": port,
        "source_ips": list(rule.get("source_ips") or []) if direction == "in" else [],
        "destination_ips": list(rule.get("destination_ips") or []) if direction == "out" else [],
        "description": description,
    }

"""The read-only catalog the API serves: locations, datacenters, server types and images.

Shapes follow the public API reference and hcloud-go's schema package (what the OpenTofu provider
decodes). The server types are the ones Hetzner sells today: the Intel/AMD shared types cx23..cx53
replaced cx22..cx52 and cpx12.. replaced cpx11..cpx51, deprecated on 2025-10-16 and no longer
sold; the twin keeps listing the retired types with their deprecation (the API does), and refuses to create them.
"""

from __future__ import annotations

from typing import Any

# A retired type's deprecation: announced with the cx23 launch, no orders after the end of 2025.
RETIRED = {"announced": "2025-10-16T00:00:00+00:00", "unavailable_after": "2026-01-01T00:00:00+00:00"}

LOCATIONS: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "fsn1",
        "description": "Falkenstein DC Park 1",
        "country": "DE",
        "city": "Falkenstein",
        "latitude": 50.47612,
        "longitude": 12.370071,
        "network_zone": "eu-central",
    },
    {
        "id": 2,
        "name": "nbg1",
        "description": "Nuremberg DC Park 1",
        "country": "DE",
        "city": "Nuremberg",
        "latitude": 49.452102,
        "longitude": 11.076665,
        "network_zone": "eu-central",
    },
    {
        "id": 3,
        "name": "hel1",
        "description": "Helsinki DC Park 1",
        "country": "FI",
        "city": "Helsinki",
        "latitude": 60.169855,
        "longitude": 24.938379,
        "network_zone": "eu-central",
    },
    {
        "id": 4,
        "name": "ash",
        "description": "Ashburn, VA",
        "country": "US",
        "city": "Ashburn, VA",
        "latitude": 39.045821,
        "longitude": -77.487073,
        "network_zone": "us-east",
    },
    {
        "id": 5,
        "name": "hil",
        "description": "Hillsboro, OR",
        "country": "US",
        "city": "Hillsboro, OR",
        "latitude": 45.54222,
        "longitude": -122.951924,
        "network_zone": "us-west",
    },
    {
        "id": 6,
        "name": "sin",
        "description": "Singapore",
        "country": "SG",
        "city": "Singapore",
        "latitude": 1.283333,
        "longitude": 103.833333,
        "network_zone": "ap-southeast",
    },
]

# name, id, cores, memory GB, disk GB, cpu_type, architecture, retired
_TYPES: list[tuple[str, int, int, float, int, str, str, bool]] = [
    ("cx22", 104, 2, 4.0, 40, "shared", "x86", True),
    ("cx32", 105, 4, 8.0, 80, "shared", "x86", True),
    ("cx42", 106, 8, 16.0, 160, "shared", "x86", True),
    ("cx52", 107, 16, 32.0, 320, "shared", "x86", True),
    ("cx23", 108, 2, 4.0, 40, "shared", "x86", False),
    ("cx33", 109, 4, 8.0, 80, "shared", "x86", False),
    ("cx43", 110, 8, 16.0, 160, "shared", "x86", False),
    ("cx53", 111, 16, 32.0, 320, "shared", "x86", False),
    ("cpx11", 22, 2, 2.0, 40, "shared", "x86", True),
    ("cpx21", 23, 3, 4.0, 80, "shared", "x86", True),
    ("cpx31", 24, 4, 8.0, 160, "shared", "x86", True),
    ("cpx41", 25, 8, 16.0, 240, "shared", "x86", True),
    ("cpx51", 26, 16, 32.0, 360, "shared", "x86", True),
    ("cpx12", 112, 1, 2.0, 40, "shared", "x86", False),
    ("cpx22", 113, 2, 4.0, 80, "shared", "x86", False),
    ("cpx32", 114, 4, 8.0, 160, "shared", "x86", False),
    ("cax11", 45, 2, 4.0, 40, "shared", "arm", False),
    ("cax21", 93, 4, 8.0, 80, "shared", "arm", False),
    ("ccx13", 96, 2, 8.0, 80, "dedicated", "x86", False),
    ("ccx23", 97, 4, 16.0, 160, "dedicated", "x86", False),
]
# The shared x86 types are sold in the European locations only; the rest everywhere.
_EU = ("fsn1", "nbg1", "hel1")


def _type_locations(name: str) -> list[str]:
    return list(_EU) if name.startswith("cx") else [loc["name"] for loc in LOCATIONS]


def _server_type(spec: tuple[str, int, int, float, int, str, str, bool]) -> dict[str, Any]:
    name, tid, cores, memory, disk, cpu, arch, retired = spec
    deprecation = dict(RETIRED) if retired else None
    locations = [loc for loc in LOCATIONS if loc["name"] in _type_locations(name)]
    return {
        "id": tid,
        "name": name,
        "description": name.upper(),
        "cores": cores,
        "memory": memory,
        "disk": disk,
        "storage_type": "local",
        "cpu_type": cpu,
        "architecture": arch,
        "category": "cost_optimized" if name.startswith("cx") else "regular_purpose",
        "included_traffic": 0,
        "deprecated": retired,
        "deprecation": deprecation,
        "prices": [
            {
                "location": loc["name"],
                "price_hourly": {"net": "0.0080", "gross": "0.0095"},
                "price_monthly": {"net": "4.9900", "gross": "5.9381"},
                "included_traffic": 21990232555520,
                "price_per_tb_traffic": {"net": "1.0000", "gross": "1.1900"},
            }
            for loc in locations
        ],
        "locations": [
            {
                "id": loc["id"],
                "name": loc["name"],
                "deprecation": deprecation,
                "available": not retired,
                "recommended": not retired,
            }
            for loc in locations
        ],
    }


SERVER_TYPES: list[dict[str, Any]] = [_server_type(spec) for spec in _TYPES]

DATACENTERS: list[dict[str, Any]] = []
for _i, (_loc, _dc) in enumerate(
    [
        ("fsn1", "fsn1-dc14"),
        ("nbg1", "nbg1-dc3"),
        ("hel1", "hel1-dc2"),
        ("ash", "ash-dc1"),
        ("hil", "hil-dc1"),
        ("sin", "sin-dc1"),
    ]
):
    _location = next(loc for loc in LOCATIONS if loc["name"] == _loc)
    _here = [t for t in SERVER_TYPES if _loc in _type_locations(t["name"])]
    DATACENTERS.append(
        {
            "id": _i + 1,
            "name": _dc,
            "description": f"{_location['description'].split(' DC')[0]} {_dc.split('-')[1]}",
            "location": _location,
            # Still answered, as the API does, though deprecated in favour of server_types' locations.
            "server_types": {
                "supported": [t["id"] for t in _here],
                "available": [t["id"] for t in _here if not t["deprecated"]],
                "available_for_migration": [t["id"] for t in _here],
            },
        }
    )

# name, id, os_flavor, os_version, architecture, description
_IMAGES: list[tuple[str, int, str, str, str, str]] = [
    ("debian-12", 114690387, "debian", "12", "x86", "Debian 12"),
    ("debian-12", 114690389, "debian", "12", "arm", "Debian 12"),
    ("debian-13", 310557660, "debian", "13", "x86", "Debian 13"),
    ("debian-13", 310557661, "debian", "13", "arm", "Debian 13"),
    ("ubuntu-24.04", 161547269, "ubuntu", "24.04", "x86", "Ubuntu 24.04"),
    ("ubuntu-24.04", 161547270, "ubuntu", "24.04", "arm", "Ubuntu 24.04"),
]

IMAGES: list[dict[str, Any]] = [
    {
        "id": iid,
        "type": "system",
        "status": "available",
        "name": name,
        "description": desc,
        "image_size": None,
        "disk_size": 5,
        "created": "2023-06-13T06:00:02+00:00",
        "created_from": None,
        "bound_to": None,
        "os_flavor": flavor,
        "os_version": version,
        "rapid_deploy": True,
        "protection": {"delete": False},
        "deprecated": None,
        "deleted": None,
        "labels": {},
        "architecture": arch,
    }
    for name, iid, flavor, version, arch, desc in _IMAGES
]


def location(name: str) -> dict[str, Any] | None:
    return next((loc for loc in LOCATIONS if loc["name"] == name), None)


def datacenter_of(location_name: str) -> dict[str, Any]:
    return next(dc for dc in DATACENTERS if dc["location"]["name"] == location_name)


def is_orderable(server_type: dict[str, Any], location_name: str) -> bool:
    return not server_type["deprecated"] and location_name in _type_locations(server_type["name"])

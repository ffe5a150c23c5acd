#!/usr/bin/env python3
"""Generate the Grafana dashboards (grafana-foundation-sdk) into grafana/dashboards/*.json.

    python3 grafana/tools/generate.py            # write the JSON files
    python3 grafana/tools/generate.py --check    # fail if a committed file differs from the output

Datasources are referenced by the fixed uids of grafana/provisioning/datasources/datasources.yml.
Metric names: docs/metrics.md, the recording rules in prometheus/rules/, and the exporters'
own names (node_exporter, nginx-prometheus-exporter 0.11, blackbox_exporter).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import yaml
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

GRAFANA_DIR = Path(__file__).resolve().parent.parent
OUT_DIR = GRAFANA_DIR / "dashboards"
# The SLO target: prometheus/defaults.yml, which the alerting rules read too.
SLO_TARGET = float(
    yaml.safe_load((GRAFANA_DIR.parent / "prometheus" / "defaults.yml").read_text())["ngd_slo_ingest_target"]
)
ERROR_BUDGET = f"{1 - SLO_TARGET:g}"
PROMETHEUS_UID = "ngd-prometheus"
VICTORIAMETRICS_UID = "ngd-victoriametrics"
PROM = dm.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
VM = dm.DataSourceRef(type_val="prometheus", uid=VICTORIAMETRICS_UID)
# The gateway's Influx line sink writes `<prefix>_0x<model>` measurements; VictoriaMetrics turns
# each field into `<prefix>_0x<model>_<field>` with tags device and model.
TELEMETRY_PREFIX = "nanogridata"
GW = 'job="gateway",instance=~"$instance"'
RATE = "$__rate_interval"

DashboardFactory = Callable[[], dashboard.Dashboard]


def query(expr: str, legend: str = "", ref: str = "A", ds: dm.DataSourceRef = PROM) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref).datasource(ds)


def series(
    title: str, unit: str, queries: list[tuple[str, str]], ds: dm.DataSourceRef = PROM, width: int = 12
) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(ds).span(width).height(8)
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(query(expr, legend, chr(ord("A") + index), ds))
    return panel


def single(title: str, unit: str, expr: str, ds: dm.DataSourceRef = PROM, width: int = 6) -> stat.Panel:
    panel = stat.Panel().title(title).unit(unit).datasource(ds).span(width).height(4)
    return panel.with_target(query(expr, "", "A", ds))


def instance_variable(job: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable("instance")
        .label("Instance")
        .datasource(PROM)
        .query(f'label_values(up{{job="{job}"}}, instance)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".+")
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def base(uid: str, title: str, tags: list[str]) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .tags(["nanogridata", *tags])
        .editable()
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
    )


def gateway_overview() -> dashboard.Dashboard:
    return (
        base("ngd-gateway-overview", "Nanogridata / Gateway overview", ["gateway"])
        .with_variable(instance_variable("gateway"))
        .with_row(dashboard.Row("Service level"))
        .with_panel(single("Gateways ready", "none", 'sum(nanogridata_ready{job="gateway"})'))
        .with_panel(single("Ingest success (5m)", "percentunit", "nanogridata:ingest_success:ratio_rate5m"))
        .with_panel(
            single(
                "VIP probe availability (1h)", "percentunit", "nanogridata:vip_probe_success:avg_over_time1h"
            )
        )
        .with_panel(single("ACK latency p99 (pair)", "s", "nanogridata:ack_latency_seconds:p99_rate5m"))
        .with_panel(
            series(
                f"Error budget burn rate (x of {SLO_TARGET * 100:g} %)",
                "none",
                [
                    (f"nanogridata:ingest_error:ratio_rate{window} / {ERROR_BUDGET}", window)
                    for window in ("5m", "1h", "6h", "3d")
                ],
                width=24,
            )
        )
        .with_row(dashboard.Row("Ingest"))
        .with_panel(
            series(
                "Frames received by model / type",
                "reqps",
                [
                    (
                        f"sum by (model, type) (rate(nanogridata_frames_received_total{{{GW}}}[{RATE}]))",
                        "{{model}} {{type}}",
                    ),
                ],
            )
        )
        .with_panel(
            series(
                "ACKs by status",
                "reqps",
                [
                    (f"sum by (status) (rate(nanogridata_frames_acked_total{{{GW}}}[{RATE}]))", "{{status}}"),
                ],
            )
        )
        .with_panel(
            series(
                "Rejections by reason",
                "reqps",
                [
                    (
                        f"sum by (reason) (rate(nanogridata_frames_rejected_total{{{GW}}}[{RATE}]))",
                        "{{reason}}",
                    ),
                ],
            )
        )
        .with_panel(
            series(
                "ACK latency",
                "s",
                [
                    (
                        f"histogram_quantile(0.5, sum by (instance, le) (rate(nanogridata_ack_latency_seconds_bucket{{{GW}}}[{RATE}])))",
                        "p50 {{instance}}",
                    ),
                    (
                        f"histogram_quantile(0.99, sum by (instance, le) (rate(nanogridata_ack_latency_seconds_bucket{{{GW}}}[{RATE}])))",
                        "p99 {{instance}}",
                    ),
                ],
            )
        )
        .with_panel(
            series(
                "Device connections",
                "short",
                [
                    (f"nanogridata_connections_active{{{GW}}}", "active {{instance}}"),
                    (
                        f"sum by (instance) (rate(nanogridata_connections_total{{{GW}}}[{RATE}]))",
                        "accepted/s {{instance}}",
                    ),
                ],
            )
        )
        .with_panel(
            series(
                "MAC failures and replays",
                "reqps",
                [
                    (
                        f"sum by (model) (rate(nanogridata_mac_failures_total{{{GW}}}[{RATE}]))",
                        "MAC failures {{model}}",
                    ),
                    (
                        f"sum by (model) (rate(nanogridata_replays_total{{{GW}}}[{RATE}]))",
                        "replays {{model}}",
                    ),
                ],
            )
        )
        .with_row(dashboard.Row("Spool and delivery"))
        .with_panel(
            series(
                "Spool fill",
                "percentunit",
                [
                    (
                        f"nanogridata_spool_bytes{{{GW}}} / nanogridata_spool_limit_bytes{{{GW}}}",
                        "{{instance}}",
                    ),
                ],
            )
        )
        .with_panel(
            series(
                "Spool backlog",
                "short",
                [
                    (f"nanogridata_spool_records{{{GW}}}", "records {{instance}}"),
                    (f"nanogridata_spool_oldest_record_age_seconds{{{GW}}}", "oldest age (s) {{instance}}"),
                ],
            )
        )
        .with_panel(
            series(
                "Records delivered by sink",
                "reqps",
                [
                    (
                        f"sum by (instance, sink) (rate(nanogridata_sink_records_delivered_total{{{GW}}}[{RATE}]))",
                        "{{instance}} {{sink}}",
                    ),
                ],
            )
        )
        .with_panel(
            series(
                "Sink errors and dead letters",
                "reqps",
                [
                    (
                        f"sum by (sink, class) (rate(nanogridata_sink_errors_total{{{GW}}}[{RATE}]))",
                        "{{sink}} {{class}}",
                    ),
                    (
                        f"sum by (sink) (rate(nanogridata_sink_dead_letters_total{{{GW}}}[{RATE}]))",
                        "dead letters {{sink}}",
                    ),
                ],
            )
        )
        .with_panel(
            series(
                "Peer sync",
                "s",
                [
                    (f"nanogridata_peer_sync_lag_seconds{{{GW}}}", "lag {{instance}} -> {{peer}}"),
                    (f"nanogridata_peer_sync_up{{{GW}}}", "up {{instance}} -> {{peer}}"),
                ],
                width=24,
            )
        )
    )


VRRP_STATES = [
    dm.ValueMap(
        options={
            "0": dm.ValueMappingResult(text="INIT", color="blue"),
            "1": dm.ValueMappingResult(text="BACKUP", color="yellow"),
            "2": dm.ValueMappingResult(text="MASTER", color="green"),
            "3": dm.ValueMappingResult(text="FAULT", color="red"),
        }
    )
]


def ha_pair() -> dashboard.Dashboard:
    vrrp = (
        statetimeline.Panel()
        .title("VRRP state per node")
        .datasource(PROM)
        .span(24)
        .height(6)
        .mappings(VRRP_STATES)  # type: ignore[arg-type]
        .with_target(query('keepalived_vrrp_state{job="node"}', "{{instance}} {{vrrp_instance}}"))
    )
    return (
        base("ngd-ha-pair", "Nanogridata / HA pair", ["ha"])
        .with_panel(vrrp)
        .with_panel(single("VIP probe now", "bool_yes_no", 'min(probe_success{job="blackbox_vip"})'))
        .with_panel(
            single(
                "VIP availability (1d)", "percentunit", "min(nanogridata:vip_probe_success:avg_over_time1d)"
            )
        )
        .with_panel(
            single(
                "VRRP transitions (1h)",
                "short",
                'sum(increase(keepalived_vrrp_transitions_total{job="node"}[1h]))',
            )
        )
        .with_panel(single("nginx up", "short", 'sum(nginx_up{job="nginx"})'))
        .with_panel(
            series(
                "VIP probe (TCP connect)",
                "s",
                [
                    ('probe_duration_seconds{job="blackbox_vip"}', "connect time {{instance}}"),
                    ('probe_success{job="blackbox_vip"}', "success {{instance}}"),
                ],
            )
        )
        .with_panel(
            series(
                "Failovers (VRRP transitions per node)",
                "short",
                [
                    (
                        f'sum by (instance) (increase(keepalived_vrrp_transitions_total{{job="node"}}[{RATE}]))',
                        "{{instance}}",
                    ),
                ],
            )
        )
        .with_panel(
            series(
                "nginx connections",
                "short",
                [
                    ('nginx_connections_active{job="nginx"}', "active {{instance}}"),
                    (f'rate(nginx_connections_accepted{{job="nginx"}}[{RATE}])', "accepted/s {{instance}}"),
                ],
            )
        )
        .with_panel(
            series(
                "keepalived state file age",
                "s",
                [
                    (
                        'time() - node_textfile_mtime_seconds{job="node",file=~"(.*/)?keepalived[^/]*[.]prom"}',
                        "{{instance}}",
                    ),
                ],
            )
        )
    )


def nodes() -> dashboard.Dashboard:
    node = 'job="node",instance=~"$instance"'
    return (
        base("ngd-nodes", "Nanogridata / Nodes", ["nodes"])
        .with_variable(instance_variable("node"))
        .with_panel(
            series(
                "CPU busy",
                "percentunit",
                [
                    (
                        f'1 - avg by (instance) (rate(node_cpu_seconds_total{{{node},mode="idle"}}[{RATE}]))',
                        "{{instance}}",
                    ),
                ],
            )
        )
        .with_panel(
            series(
                "Memory available",
                "percentunit",
                [
                    (
                        f"node_memory_MemAvailable_bytes{{{node}}} / node_memory_MemTotal_bytes{{{node}}}",
                        "{{instance}}",
                    ),
                ],
            )
        )
        .with_panel(
            series(
                "Filesystem free",
                "percentunit",
                [
                    (
                        f'node_filesystem_avail_bytes{{{node},fstype!~"tmpfs|ramfs|squashfs"}}'
                        f' / node_filesystem_size_bytes{{{node},fstype!~"tmpfs|ramfs|squashfs"}}',
                        "{{instance}} {{mountpoint}}",
                    ),
                ],
            )
        )
        .with_panel(
            series(
                "Network",
                "Bps",
                [
                    (
                        f'sum by (instance) (rate(node_network_receive_bytes_total{{{node},device!="lo"}}[{RATE}]))',
                        "rx {{instance}}",
                    ),
                    (
                        f'sum by (instance) (rate(node_network_transmit_bytes_total{{{node},device!="lo"}}[{RATE}]))',
                        "tx {{instance}}",
                    ),
                ],
            )
        )
        .with_panel(series("Load (1m)", "short", [(f"node_load1{{{node}}}", "{{instance}}")]))
        .with_panel(
            series(
                "Clock",
                "s",
                [
                    (f"node_timex_sync_status{{{node}}}", "synchronised {{instance}}"),
                    (f"node_timex_maxerror_seconds{{{node}}}", "max error {{instance}}"),
                ],
            )
        )
    )


def telemetry() -> dashboard.Dashboard:
    selector = f'{{__name__=~"{TELEMETRY_PREFIX}_0x.+",model=~"$model",device=~"$device"}}'
    model = (
        dashboard.QueryVariable("model")
        .label("Model")
        .datasource(VM)
        .query(f'label_values({{__name__=~"{TELEMETRY_PREFIX}_0x.+"}}, model)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".+")
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )
    device = (
        dashboard.QueryVariable("device")
        .label("Device")
        .datasource(VM)
        .query(f'label_values({{__name__=~"{TELEMETRY_PREFIX}_0x.+",model=~"$model"}}, device)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".+")
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )
    return (
        base("ngd-telemetry", "Nanogridata / Telemetry", ["telemetry"])
        .with_variable(model)
        .with_variable(device)
        .with_panel(single("Devices reporting", "short", f"count(count by (device) ({selector}))", VM))
        .with_panel(single("Series", "short", f"count({selector})", VM))
        .with_panel(series("Device values", "short", [(selector, "{{__name__}} {{device}}")], VM, width=24))
        .with_panel(
            series(
                "Points stored per model",
                "short",
                [
                    (f"count by (model) (count_over_time({selector}[{RATE}]))", "{{model}}"),
                ],
                VM,
            )
        )
        .with_panel(
            series(
                "Seconds since last point per device",
                "s",
                [
                    (f"time() - max by (device) (timestamp({selector}))", "{{device}}"),
                ],
                VM,
            )
        )
    )


DASHBOARDS: dict[str, DashboardFactory] = {
    "gateway-overview": gateway_overview,
    "ha-pair": ha_pair,
    "nodes": nodes,
    "telemetry": telemetry,
}


def render(factory: DashboardFactory) -> str:
    return json.dumps(factory().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed files instead of writing"
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    stale = []
    for name, factory in DASHBOARDS.items():
        path = args.out / f"{name}.json"
        text = render(factory)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(path)
    if stale:
        print(
            "generate.py: out of date (run grafana/tools/generate.py and commit): " + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Failover drills for the Nanogridata HA pair: inject one fault under device traffic, heal it,
measure (VIP move time, device reconnects, frames acked vs. stored at the sink, alerts) and
report. Entry point: scripts/drill.sh."""

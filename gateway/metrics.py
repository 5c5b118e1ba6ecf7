"""Prometheus metrics of the intake path, in a registry of the service's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
WAIT_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.calls = Counter("ecgw_calls", "Emergency calls received", ["service"], registry=r)
        self.incidents = Counter("ecgw_incidents_created", "Incidents stored", registry=r)
        self.answered = Counter("ecgw_calls_answered", "Calls answered by a dispatcher", ["position"], registry=r)
        self.overflowed = Counter("ecgw_calls_overflowed", "Calls sent to the backup centre", registry=r)
        self.abandoned = Counter("ecgw_calls_abandoned", "Callers who hung up before a dispatcher answered",
                                 registry=r)
        self.failed_over = Counter("ecgw_calls_failed_to_dialplan", "Calls handed back to the fallback dialplan "
                                   "after an internal error", registry=r)
        self.inbox_behind = Counter("ecgw_call_inbox_behind", "Times a call's task fell behind its ARI events "
                                    "past the inbox high-water mark (the events are kept, in order)", registry=r)
        self.fallback_registered = Counter("ecgw_fallback_calls_registered", "Calls the fallback dialplan served "
                                           "unseen, registered as incidents from Asterisk's CEL log", registry=r)
        self.fallback_runs = Counter("ecgw_fallback_reconcile_runs", "Reads of the CEL log for fallback calls, by "
                                     "result (ok, unreadable, store_failed)", ["result"], registry=r)
        self.cel_rows = Counter("ecgw_cel_rows", "CEL log rows read, by outcome (event, malformed: skipped)",
                                ["outcome"], registry=r)
        self.bad_input = Counter("ecgw_bad_input", "Rejected or repaired input", ["kind"], registry=r)
        self.store_latency = Histogram("ecgw_incident_store_seconds", "Call arrival to incident stored",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.ring_latency = Histogram("ecgw_ring_seconds", "Hand-off to a position until its phone rings",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("ecgw_queue_wait_seconds", "Queued to answered by a dispatcher",
                                    buckets=WAIT_BUCKETS, registry=r)
        self.queue_length = Gauge("ecgw_queue_length", "Calls waiting for a dispatcher", registry=r)
        self.active_calls = Gauge("ecgw_active_calls", "Emergency calls in the gateway", registry=r)
        self.ari_connected = Gauge("ecgw_ari_connected", "1 while the ARI websocket is up", registry=r)
        self.asterisk_channels = Gauge("ecgw_asterisk_channels", "Active channels reported over AMI", registry=r)
        self.asterisk_up = Gauge("ecgw_asterisk_fully_booted", "1 while AMI reports Asterisk fully booted",
                                 registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

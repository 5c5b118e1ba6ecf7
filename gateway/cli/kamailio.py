"""``gateway kamailio up|down|status``: the Kamailio in front of the Asterisk nodes (``[cluster]``).

    gateway kamailio up        # render dialplans/kamailio/ into [cluster] instance_dir and start it
    gateway kamailio status    # its pid and each node as the dispatcher sees it (active / inactive)
    gateway kamailio down
"""

from __future__ import annotations

import argparse

from gateway import check_config
from gateway.errors import ConfigError


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    k = sub.add_parser("kamailio", help="the SIP proxy spreading calls over the Asterisk nodes ([cluster])")
    k.add_argument("action", choices=["up", "down", "status"])
    k.set_defaults(fn=cmd_kamailio)


def cmd_kamailio(args: argparse.Namespace) -> int:
    from gateway.kamailio import proxy

    cfg = check_config.load(args.config)
    if args.action == "up":
        if not cfg.cluster.enabled:
            raise ConfigError([f"{args.config}: cluster.enabled: set it to true to run Kamailio in front of "
                               "the Asterisk nodes"])
        instance = proxy.up(cfg)
        c = cfg.cluster
        print(f"Kamailio up: SIP udp {c.listen}:{c.sip_port} → {', '.join(c.nodes)} ({c.algorithm}, "
              f"OPTIONS every {c.probe_interval_s} s); log {instance.log_file}")
    elif args.action == "down":
        proxy.down(cfg)
        print("Kamailio stopped")
    else:
        print(proxy.status(cfg))
    return 0

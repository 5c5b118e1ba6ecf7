"""``gateway-sim``: the drill operator's command (answering dispatcher phones, provider stand-ins,
drills with a report). The simulator is a program of its own: the gateway never imports it."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
from functools import partial
from pathlib import Path

import msgspec
import trio
from tqdm import tqdm

from gateway import settings
from gateway.cli.main import command
from gateway.settings import GatewayConfig
from sim import drill as drill_mod
from sim import sipp
from sim.report import PlacedCall, summary_text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gateway-sim", description="Call simulator and drills for the gateway")
    p.add_argument("--config", default=str(settings.DEFAULT_PATH), help="the gateway's config file (TOML)")
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("phones", help="answering dispatcher phones (sipp) until stopped")
    sub.add_parser("providers", help="the provider stand-ins the [warnings.drill] channels point at, until stopped")
    drill = sub.add_parser("drill", help="place the calls of a drill file and report")
    drill.add_argument("file")
    drill.add_argument("--report", default="")
    drill.add_argument("--no-progress", action="store_true")
    drill_config = sub.add_parser("drill-config", help="write the gateway config an escalation drill runs against")
    drill_config.add_argument("file")
    drill_config.add_argument("--out", required=True)
    failover = sub.add_parser("failover", help="two nodes on loopback lose one: the failover drill's report "
                                                "(issue 14; needs Kamailio and PostgreSQL)")
    failover.add_argument("file", nargs="?", default="sim/drills/failover.toml")
    failover.add_argument("--workdir", default="", help="keep the lab's files here (default: a temporary directory)")
    pg = sub.add_parser("pg", help="a throwaway PostgreSQL on loopback (issue 14) until stopped, then removed")
    pg.add_argument("--standby", action="store_true", help="with a synchronous streaming standby")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return command(args.log_level, lambda: run(args, settings.load(args.config)))


def run(args: argparse.Namespace, cfg: GatewayConfig) -> int:
    if args.action == "phones":
        return trio.run(phones, cfg)
    if args.action == "providers":
        from sim.providers import serve

        return trio.run(serve, cfg.warnings.drill)
    if args.action == "drill":
        return run_drill(cfg, Path(args.file), args.report, show_progress=sys.stderr.isatty() and not args.no_progress)
    if args.action == "failover":
        return trio.run(run_failover_drill, Path(args.file), args.workdir)
    if args.action == "pg":
        from sim.pg import serve as serve_pg

        return trio.run(serve_pg, args.standby)
    if args.action == "drill-config":
        return write_drill_config(Path(args.config), Path(args.file), Path(args.out))
    raise ValueError(f"unknown sim action {args.action!r}")


async def phones(cfg: GatewayConfig) -> int:
    """Answering phones for every position until Ctrl-C or SIGTERM."""
    workdir = Path(tempfile.mkdtemp(prefix="ecgw-phones-"))
    # Receiving SIGINT as a signal (not KeyboardInterrupt) lets the phones' clean-up run in order.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with sipp.phones(cfg, workdir):
            for (host, port), name in sipp.phone_endpoints(cfg).items():
                print(f"{name:<10} sip:{host}:{port}  (rings 300 ms, then answers)")
            print(f"logs in {workdir}; Ctrl-C stops", flush=True)
            async for _ in signals:
                break
    return 0


def run_drill(cfg: GatewayConfig, path: Path, report_path: str, *, show_progress: bool) -> int:
    """Run a drill file, print the summary, write the JSON report. Exit 1 if any call was lost."""
    spec = drill_mod.load(path)
    total = len(drill_mod.plan(spec))
    with tqdm(total=total, desc=spec.name or path.stem, unit="call", file=sys.stderr,
              disable=not show_progress, leave=False) as bar:
        def progress(_call: PlacedCall) -> None:
            bar.update(1)

        try:
            result = trio.run(partial(drill_mod.run, cfg, spec, source=str(path), progress=progress))
        except KeyboardInterrupt:
            print("drill interrupted", file=sys.stderr)
            return 130
    print(summary_text(result))
    if report_path:
        Path(report_path).write_bytes(msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n")
        print(f"report written to {report_path}")
    return 1 if result.calls_lost else 0


def write_drill_config(config_path: Path, drill_path: Path, out: Path) -> int:
    """``gateway-sim drill-config FILE --out PATH``: the gateway config an escalation drill runs against
    (``sim.responders.drill_config``), on free loopback ports."""
    import socket

    from sim.responders import Ports, drill_config
    from sim.sipp import free_port

    spec = drill_mod.load(drill_path)
    tcp = socket.SOCK_STREAM
    ports = Ports(smsc=free_port(tcp), responders_bot=free_port(tcp), reports_bot=free_port(tcp), trunk=free_port())
    drill_config(config_path, spec, out, ports)
    print(f"wrote {out}; run the gateway with it (gateway --config {out} run), then: "
          f"gateway-sim --config {out} drill {drill_path}")
    return 0


async def run_failover_drill(path: Path, workdir: str) -> int:
    """``gateway-sim failover``: the drill's report on stdout; 1 if it lost a record, a step or a recipient."""
    from sim.failover import run_failover
    from sim.failover_report import load_spec

    spec = load_spec(path)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd narrates every command of the fan-out
    with tempfile.TemporaryDirectory(prefix="ecgw-failover-") as scratch:
        report = await run_failover(spec, Path(workdir or scratch))
    print("\n".join(report.lines()))
    return 0 if report.lossless() else 1

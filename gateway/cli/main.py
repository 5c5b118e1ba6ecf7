"""The ``gateway`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec

from gateway import check_config, settings
from gateway.cli import alerts, db, kamailio, users
from gateway.errors import ConfigError, GatewayError
from gateway.files import UMASK
from gateway.settings import credentials

_json = msgspec.json.Encoder()
# Libraries narrate at INFO (Twilio: every request, ~10 lines per health probe): WARNING unless debugging.
LIBRARY_LOGGERS = ("twilio", "httpx", "httpcore", "telegram", "aiohttp", "asyncio", "hypercorn", "panoramisk",
                   "pymodbus", "aiosmtplib")


def _load(args: argparse.Namespace) -> settings.GatewayConfig:
    return check_config.load(args.config)


def _load_to_run(args: argparse.Namespace) -> settings.GatewayConfig:
    """The config with this installation's secrets in place of shipped defaults: the one place
    ``gateway run`` (ARI, AMI, voice channels) and ``gateway asterisk up`` (ari.conf, manager.conf)
    get them, so both use the same (``gateway.settings.credentials``)."""
    return credentials.resolve(_load(args))


def _private_files() -> None:
    """Stores, keys and logs this command creates are not for other accounts (``gateway.files``)."""
    os.umask(UMASK)


def cmd_check_config(args: argparse.Namespace) -> int:
    problems, warnings = check_config.findings(args.config)
    for problem in problems:
        print(problem, file=sys.stderr)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not problems:
        print(f"{args.config}: OK")
    return 1 if problems else 0


def cmd_run(args: argparse.Namespace) -> int:
    import signal

    import trio

    from gateway.app import Gateway

    _private_files()
    cfg = _load_to_run(args)
    config_path = str(Path(args.config).resolve())

    async def until_signal() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(Gateway(cfg, config_path).run)
            _freeze_what_lives_as_long()
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    logging.getLogger("gateway").info("%s: stopping", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break

    trio.run(until_signal)
    return 0


def _freeze_what_lives_as_long() -> None:
    """Objects that exist once the gateway is ready (modules, config, drivers: ~86,000) live as long as the
    process: out of the garbage collector's way. Its full passes walked them all, ~35 ms each on this
    VM, and Trio's one thread serves no call meanwhile (measured with the intake bench at 50 calls/s)."""
    import gc

    gc.collect()
    gc.freeze()


def cmd_asterisk(args: argparse.Namespace) -> int:
    from gateway.asterisk import prompts, sandbox

    # not with _private_files(): Asterisk's own user must read the prompts this writes
    cfg = _load_to_run(args) if args.action == "up" else _load(args)
    if args.action == "up":
        box = sandbox.up(cfg)
        count = prompts.generate(box.host_dir / "sounds", offer_1402_digit=cfg.ivr.offer_1402_digit)
        print(f"Asterisk up ({'chroot ' + str(box.root) if box.chrooted else 'system'}), instance {box.instance}: "
              f"SIP udp 127.0.0.1:{cfg.asterisk.sip_port}, ARI http://127.0.0.1:{cfg.asterisk.http_port}/ari, "
              f"AMI 127.0.0.1:{cfg.asterisk.ami_port}; {count} prompts; logs {box.host_dir / 'log'}")
    elif args.action == "prepare":
        box = sandbox.prepare(cfg)
        print(f"Asterisk sandbox ready at {box.root}")
    elif args.action == "down":
        sandbox.down(cfg)
        print("Asterisk stopped")
    elif args.action == "status":
        print(sandbox.status(cfg))
    elif args.action == "cli":
        print(sandbox.cli(sandbox.locate(cfg), " ".join(args.command)), end="")
    return 0


def _sync_store(cfg: settings.GatewayConfig):  # type: ignore[no-untyped-def]
    from gateway.stores import open_incident_store

    _private_files()
    return open_incident_store(cfg.store)


def cmd_incidents(args: argparse.Namespace) -> int:
    store = _sync_store(_load(args))
    if args.action == "list":
        rows = store.recent(args.limit)
        if args.json:
            print(_json.encode(rows).decode())
        else:
            for r in rows:
                print(f"{r.id}  {r.service:>4}  {r.state:<10} {r.number or 'withheld':<14} {r.category or '-':<10} "
                      f"{r.position or '-'}")
    else:
        incident = store.get(args.id)
        print(msgspec.json.format(_json.encode(incident), indent=2).decode() if args.json else incident)
    return 0


def cmd_directory(args: argparse.Namespace) -> int:
    from gateway.incident.subscribers import parse_csv

    cfg = _load(args)
    text = Path(args.file).read_text(encoding="utf-8-sig")
    entries, problems = parse_csv(text, cfg.ani)
    for problem in problems:
        print(f"{args.file}: {problem}", file=sys.stderr)
    _sync_store(cfg).directory_put(entries)
    print(f"imported {len(entries)} entries, skipped {len(problems)} bad rows")
    return 1 if problems and not entries else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gateway", description="Emergency telephony gateway (102/112)")
    p.add_argument("--config", default=str(settings.DEFAULT_PATH), help="config file (TOML)")
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="run the gateway service").set_defaults(fn=cmd_run)
    sub.add_parser("check-config", help="validate the config file").set_defaults(fn=cmd_check_config)
    a = sub.add_parser("asterisk", help="provision and control the Asterisk sandbox")
    a.add_argument("action", choices=["up", "down", "status", "cli", "prepare"])
    a.add_argument("command", nargs="*", help="CLI command for 'cli'")
    a.set_defaults(fn=cmd_asterisk)
    i = sub.add_parser("incidents", help="read incidents from the store")
    isub = i.add_subparsers(dest="action", required=True)
    il = isub.add_parser("list")
    il.add_argument("--json", action="store_true")
    il.add_argument("--limit", type=int, default=50)
    ishow = isub.add_parser("show")
    ishow.add_argument("id")
    ishow.add_argument("--json", action="store_true")
    i.set_defaults(fn=cmd_incidents)
    d = sub.add_parser("directory", help="subscriber directory")
    dsub = d.add_subparsers(dest="action", required=True)
    dimp = dsub.add_parser("import")
    dimp.add_argument("file")
    d.set_defaults(fn=cmd_directory)
    alerts.add_parsers(sub)
    users.add_parsers(sub)
    kamailio.add_parsers(sub)
    db.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return command(args.log_level, lambda: int(args.fn(args)))


def command(log_level: str, run: Callable[[], int]) -> int:
    """Run a command with logging set up; our errors become their message and exit status 2 (every
    config problem, one per line) or 1, never a traceback (also for ``gateway-sim``)."""
    level = log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return run()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

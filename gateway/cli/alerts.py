"""``gateway alert …`` and ``gateway recipients …``: the officer's commands, spoken to the running
gateway over its HTTP API with the local key (so the service, not the CLI, sends)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx
import msgspec

from gateway import settings
from gateway.errors import GatewayError
from gateway.web.auth import key_path

_json = msgspec.json.Encoder()


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    a = sub.add_parser("alert", help="public warnings (CAP 1.2): draft, approve, send, cancel, status")
    asub = a.add_subparsers(dest="action", required=True)
    draft = asub.add_parser("draft", help="draft an alert; prints its id")
    _spec_args(draft)
    update = asub.add_parser("update", help="draft an Update of a sent alert")
    update.add_argument("id")
    _spec_args(update)
    for name in ("approve", "send", "cancel"):
        p = asub.add_parser(name)
        p.add_argument("id")
        p.add_argument("--as", dest="user", required=True, help="the officer acting")
        if name == "approve":
            p.add_argument("--send", action="store_true", help="send at once on approval")
        if name == "cancel":
            p.add_argument("--note", default="")
    for name in ("status", "show", "preview"):
        p = asub.add_parser(name)
        p.add_argument("id")
        p.add_argument("--json", action="store_true")
    asub.add_parser("list").add_argument("--json", action="store_true")
    a.set_defaults(fn=cmd_alert)
    r = sub.add_parser("recipients", help="warning recipients")
    rsub = r.add_subparsers(dest="action", required=True)
    imp = rsub.add_parser("import", help="import a recipients CSV (bad rows are reported, good ones kept)")
    imp.add_argument("file")
    imp.add_argument("--as", dest="user", required=True)
    r.set_defaults(fn=cmd_recipients)


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--as", dest="user", required=True, help="the officer drafting")
    p.add_argument("--event", required=True, help="template name, e.g. flood, mudflow, earthquake")
    p.add_argument("--zone", action="append", default=[], help="a named zone (repeat)")
    p.add_argument("--circle", action="append", default=[], help="LAT,LON,RADIUS_KM (repeat)")
    p.add_argument("--status", default="Actual", choices=["Actual", "Exercise", "Test"])
    p.add_argument("--channel", action="append", default=[], help="sms, email, telegram, voice, siren (repeat)")
    p.add_argument("--severity", default="Severe")
    p.add_argument("--urgency", default="Immediate")
    p.add_argument("--certainty", default="Observed")
    p.add_argument("--expires-min", type=int, default=180)
    for field in ("headline", "description", "instruction"):
        p.add_argument(f"--{field}", action="append", default=[], metavar="LANG=TEXT")


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = {"event": args.event, "zones": args.zone, "status": args.status,
                            "severity": args.severity, "urgency": args.urgency, "certainty": args.certainty,
                            "expires_in_min": args.expires_min}
    if args.channel:
        spec["channels"] = args.channel
    if args.circle:
        spec["circles"] = [dict(zip(("lat", "lon", "radius_km"), map(float, c.split(",")), strict=True))
                           for c in args.circle]
    for field in ("headline", "description", "instruction"):
        pairs = [item.split("=", 1) for item in getattr(args, field)]
        if any(len(p) != 2 for p in pairs):
            raise GatewayError(f"--{field}: expected LANG=TEXT")
        if pairs:
            spec[field] = dict(pairs)
    return spec


class Client:
    """The running gateway's API, authenticated with the local key file."""

    def __init__(self, base_url: str, key_file: Path, user: str = "") -> None:
        try:
            key = key_file.read_text().strip()
        except OSError as exc:
            raise GatewayError(f"cannot read the gateway's local key {key_file}: is the gateway running here, "
                               f"and are you its operator? ({exc.strerror})") from exc
        headers = {"X-ECGW-Local-Key": key, "X-ECGW-User": user}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=120)

    def call(self, method: str, path: str, body: object = None, content: bytes | None = None) -> Any:
        try:
            response = self.http.request(method, path, json=body, content=content)
        except httpx.HTTPError as exc:
            raise GatewayError(f"gateway API unreachable at {self.http.base_url}: {exc}") from exc
        data = response.json() if response.content else None
        if response.status_code >= 400:
            raise GatewayError((data or {}).get("error", f"HTTP {response.status_code}"))
        return data


def _client(args: argparse.Namespace, user: str = "") -> Client:
    cfg = settings.load(args.config)
    return Client(f"http://{cfg.http.host}:{cfg.http.port}", key_path(cfg.warnings.store_path), user)


def cmd_alert(args: argparse.Namespace) -> int:
    client = _client(args, getattr(args, "user", ""))
    action = args.action
    if action == "draft":
        record = client.call("POST", "/alerts", _spec(args))
        print(record["id"])
    elif action == "update":
        print(client.call("POST", f"/alerts/{args.id}/update", _spec(args))["id"])
    elif action == "approve":
        record = client.call("POST", f"/alerts/{args.id}/approve", {"send": args.send})
        print(f"{record['id']}: {record['state']} (approved by {record['approved_by']})")
    elif action == "send":
        print(f"{args.id}: {client.call('POST', f'/alerts/{args.id}/send')['state']}")
    elif action == "cancel":
        record = client.call("POST", f"/alerts/{args.id}/cancel", {"note": args.note})
        print(f"{args.id}: cancelled by {record['id']} ({record['state']})")
    elif action == "list":
        _print_list(client.call("GET", "/alerts"), args.json)
    elif action == "status":
        _print_status(client.call("GET", f"/alerts/{args.id}/status"), args.json)
    else:
        path = f"/alerts/{args.id}" + ("/preview" if action == "preview" else "")
        print(msgspec.json.format(_json.encode(client.call("GET", path)), indent=2).decode())
    return 0


def _print_list(records: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(_json.encode(records).decode())
        return
    for r in records:
        print(f"{r['id']}  {r['state']:<10} {r['cap']['status']:<8} {r['cap']['msg_type']:<6} {r['event']:<12} "
              f"{','.join(r['zones'])}")


def _print_status(progress: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(_json.encode(progress).decode())
        return
    print(f"{progress['alert_id']}: {progress['state']}, {progress['targeted']} jobs"
          f"{'' if progress['materialised'] else ' so far'}")
    for name, p in sorted(progress["channels"].items()):
        print(f"  {name:<16} queued {p['queued']:>8}  sending {p['sending']:>6}  sent {p['sent']:>8}  "
              f"delivered {p['delivered']:>8}  failed {p['failed']:>6}  moved {p['moved']:>6}  "
              f"retried {p['retried']:>6}  {p['health']}")


def cmd_recipients(args: argparse.Namespace) -> int:
    client = _client(args, args.user)
    data = Path(args.file).read_bytes()
    result = client.call("POST", "/recipients", content=data)
    for err in result["errors"]:
        print(f"{args.file}:{err['row']}: {err['ref'] or '-'}: {err['problem']}", file=sys.stderr)
    print(f"imported {result['imported']} recipients, rejected {result['rejected']} rows")
    return 1 if result["rejected"] and not result["imported"] else 0

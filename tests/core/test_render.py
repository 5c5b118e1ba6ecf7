"""Rendering the Asterisk configuration templates in dialplans/ from the gateway config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway import settings as config
from gateway.asterisk import dialplan as render
from gateway.asterisk import prompts
from gateway.errors import ConfigError
from gateway.settings.credentials import with_secrets

INST, MODDIR, DATADIR = "/srv/ecgw/t", "/usr/lib/x86_64-linux-gnu/asterisk/modules", "/usr/share/asterisk"
SHIPPED = config.load()
CFG = with_secrets(SHIPPED, lambda service: f"{service}-generated-secret")  # as `gateway asterisk up` has it


def rendered(cfg: config.GatewayConfig = CFG) -> dict[str, str]:
    return render.render_all(cfg, INST, MODDIR, DATADIR)


def with_dispatch(**changes: Any) -> config.GatewayConfig:
    return msgspec.structs.replace(CFG, dispatch=msgspec.structs.replace(CFG.dispatch, **changes))


def sections(text: str) -> dict[str, list[str]]:
    """Asterisk config sections: name -> body lines (names may repeat, bodies are concatenated)."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.split(";", 1)[0].strip()
        if match := re.match(r"^\[([^\]]+)\]", line):
            current = match.group(1)
            out.setdefault(current, [])
        elif line and current is not None:
            out[current].append(re.sub(r"\s*=>?\s*", " = ", line, count=1))
    return out


def test_every_template_renders_without_leftover_placeholders() -> None:
    files = rendered()
    templates = sorted(p.name for p in render.TEMPLATE_DIR.glob("*.conf"))
    assert sorted(files) == templates
    assert {"extensions.conf", "pjsip.conf", "asterisk.conf", "ari.conf", "manager.conf"} <= set(files)
    for name, text in files.items():
        assert "{{" not in text and "}}" not in text, name
        assert text.strip(), name


def test_templates_actually_use_placeholders() -> None:
    used = set()
    for path in render.TEMPLATE_DIR.glob("*.conf"):
        used |= set(render.PLACEHOLDER.findall(path.read_text(encoding="utf-8")))
    values = render.template_values(CFG, INST, MODDIR, DATADIR)
    assert used <= values.keys()
    assert {"service_routes", "position_sections", "fallback_dial", "sip_port"} <= used


def test_directories_and_ports_are_filled_in() -> None:
    files = rendered()
    assert f"astetcdir => {INST}/etc" in files["asterisk.conf"]
    assert f"astmoddir => {MODDIR}" in files["asterisk.conf"]
    assert f"astdatadir => {DATADIR}" in files["asterisk.conf"]
    assert f"bind = 127.0.0.1:{CFG.asterisk.sip_port}" in files["pjsip.conf"]
    assert f"bindport = {CFG.asterisk.http_port}" in files["http.conf"]
    assert f"port = {CFG.asterisk.ami_port}" in files["manager.conf"]
    assert f"[{CFG.asterisk.ari_user}]" in files["ari.conf"]
    assert f"password = {CFG.asterisk.ari_password}" in files["ari.conf"]
    assert f"secret = {CFG.asterisk.ami_password}" in files["manager.conf"]
    assert f"Stasis({CFG.asterisk.app},caller," in files["extensions.conf"]


def test_missing_placeholder_value_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        render.fill("a={{known}} b={{ unknown }} c={{other}}", {"known": "1"}, "x.conf")
    assert info.value.problems == ["x.conf: no value for placeholder(s) other, unknown"]


def test_render_all_raises_for_a_template_with_an_unknown_placeholder(tmp_path: Path) -> None:
    (tmp_path / "ok.conf").write_text("port = {{sip_port}}\n")
    (tmp_path / "bad.conf").write_text("x = {{no_such_value}}\n")
    with pytest.raises(ConfigError, match=r"bad.conf: no value for placeholder\(s\) no_such_value"):
        render.render_all(CFG, INST, MODDIR, DATADIR, tmp_path)


def test_fill_substitutes_literally_and_once() -> None:
    values = {"a": r"\1 ${EXTEN} {{b}}", "b": "never"}
    assert render.fill("x={{a}} y={{ a }}", values) == r"x=\1 ${EXTEN} {{b}} y=\1 ${EXTEN} {{b}}"
    assert render.fill("${ECGW_SERVICE} {x}", {}) == "${ECGW_SERVICE} {x}"


def test_every_dialled_number_is_an_extension_routed_to_its_service() -> None:
    ext = sections(rendered()["extensions.conf"])["ecgw-from-operator"]
    for svc in CFG.services:
        for number in svc.dialled:
            assert f"exten = {number},1,Set(ECGW_SERVICE={svc.name})" in ext
    exact = [line for line in ext if re.match(r"exten = \+?\d+,1,", line)]
    assert len(exact) == sum(len(s.dialled) for s in CFG.services)
    assert ext.count("same = n,Goto(ecgw-emergency,s,1)") == len(exact)


def test_service_routes_follow_the_config() -> None:
    cfg = msgspec.structs.replace(CFG, services=[config.Service(name="103", dialled=["103", "+7103"])])
    ext = rendered(cfg)["extensions.conf"]
    assert "exten => 103,1,Set(ECGW_SERVICE=103)" in ext
    assert "exten => +7103,1,Set(ECGW_SERVICE=103)" in ext
    assert "ECGW_SERVICE=112" not in ext


def test_each_position_gets_an_endpoint_and_an_aor() -> None:
    pj = sections(rendered()["pjsip.conf"])
    for pos in CFG.dispatch.positions:
        name = f"ecgw-pos-{pos.name}"
        body = pj[name]
        assert f"aors = {name}" in body
        assert "type = aor" in body
        assert f"contact = {pos.contact}" in body
        assert "max_contacts = 1" in body
    text = rendered()["pjsip.conf"]
    for pos in CFG.dispatch.positions:
        assert f"[ecgw-pos-{pos.name}](ecgw-phone)" in text  # the endpoint inherits the phone template


def test_backup_centre_gets_an_endpoint_only_when_configured() -> None:
    assert "[ecgw-backup](ecgw-phone)" in rendered()["pjsip.conf"]
    assert f"contact = {CFG.dispatch.backup}" in rendered()["pjsip.conf"]
    files = rendered(with_dispatch(backup=""))
    assert "ecgw-backup" not in files["pjsip.conf"]
    assert "ecgw-backup" not in files["extensions.conf"]


def test_fallback_rings_every_position_by_default() -> None:
    ext = rendered()["extensions.conf"]
    assert "ECGW_FALLBACK_RING = PJSIP/ecgw-pos-pos1&PJSIP/ecgw-pos-pos2" in ext
    assert "ECGW_BACKUP = PJSIP/ecgw-backup" in ext


def test_fallback_positions_restrict_the_fallback_dial_string() -> None:
    positions = [config.Position(name=f"pos{i}", contact=f"sip:pos{i}@127.0.0.1:507{i}") for i in (1, 2, 3)]
    cfg = with_dispatch(positions=positions, fallback_positions=["pos3", "pos1"])
    assert render.fallback_dial(cfg) == "PJSIP/ecgw-pos-pos3&PJSIP/ecgw-pos-pos1"
    ext = rendered(cfg)["extensions.conf"]
    assert "ECGW_FALLBACK_RING = PJSIP/ecgw-pos-pos3&PJSIP/ecgw-pos-pos1\n" in ext
    assert "Dial(PJSIP/ecgw-pos-pos2&" not in ext and "&PJSIP/ecgw-pos-pos2" not in ext
    assert "[ecgw-pos-pos2](ecgw-phone)" in rendered(cfg)["pjsip.conf"]  # still a phone, just not in fallback
    # ...and the gateway can still hand callers to it.
    assert "exten => pos2,1,Dial(PJSIP/ecgw-pos-pos2," in ext


def test_without_backup_the_backup_dial_rings_the_fallback_positions() -> None:
    cfg = with_dispatch(backup="", fallback_positions=["pos2"])
    assert "ECGW_BACKUP = PJSIP/ecgw-pos-pos2\n" in rendered(cfg)["extensions.conf"]


@pytest.mark.parametrize("seconds, expected", [(20.0, "20"), (4.7, "4"), (0.3, "1")])
def test_ring_timeout_is_whole_seconds_at_least_one(seconds: float, expected: str) -> None:
    ext = rendered(with_dispatch(ring_timeout_s=seconds))["extensions.conf"]
    assert f"Dial(${{ECGW_FALLBACK_RING}},{expected},b(ecgw-phone-headers^s^1))" in ext
    assert f"Dial(${{ECGW_BACKUP}},{expected},b(ecgw-phone-headers^s^1))" in ext


def test_asterisk_variables_survive_rendering() -> None:
    ext = rendered()["extensions.conf"]
    assert "${ECGW_SERVICE}" in ext
    assert "${GEOLOC_PROFILE(location_info)}" in ext


def test_1402_is_routed_and_its_fallback_rings_only_the_1402_positions() -> None:
    ext = rendered()["extensions.conf"]
    for number in ("1402", "+71402", "81402"):
        assert f"exten => {number},1,Set(ECGW_SERVICE=1402)\n same => n,Goto(ecgw-emergency,s,1)" in ext
    assert "ECGW_FALLBACK_RING = PJSIP/ecgw-pos-pos1&PJSIP/ecgw-pos-pos2&PJSIP/ecgw-pos-pos3\n" in ext
    assert "ECGW_FALLBACK_RING_1402 = PJSIP/ecgw-pos-pos3\n" in ext
    assert ('ExecIf($["${ECGW_SERVICE}" = "1402"]?Set(ECGW_FALLBACK_RING=${ECGW_FALLBACK_RING_1402}))\n'
            " same => n,Dial(${ECGW_FALLBACK_RING},") in ext
    without = with_dispatch(positions=[p for p in CFG.dispatch.positions if p.group != "1402"])
    assert render.fallback_dial_1402(without) == render.fallback_dial(without)  # never a dead line


def test_the_102_menu_prompt_speaks_the_configured_1402_key_in_each_language() -> None:
    texts = prompts.load_texts(offer_1402_digit="5")
    menu = texts["category_102"]
    assert "бес" in menu["kk"] and "пять" in menu["ru"] and "five" in menu["en"]
    assert not any("{offer_1402}" in text for text in menu.values())
    assert set(texts["category_1402"]) == {"kk", "ru", "en"}
    assert "category_102" not in prompts.load_texts()  # not offered: not generated (the IVR does not ask it)


def test_a_cluster_node_names_itself_in_every_uniqueid_and_incident_id() -> None:
    """Two nodes count UNIQUEIDs from the same second: ``systemname`` keeps their calls' ids (and so their
    incident ids in the shared store) apart; one node renders as before."""
    one = rendered()
    assert "systemname" not in "\n".join(sections(one["asterisk.conf"])["options"])
    assert "Set(ECGW_UID=${UNIQUEID})" in one["extensions.conf"]
    node = msgspec.structs.replace(CFG, cluster=msgspec.structs.replace(CFG.cluster, node_id="node-a.2"))
    two = rendered(node)
    assert "systemname = nodea2" in sections(two["asterisk.conf"])["options"]
    assert "Set(ECGW_UID=${CUT(UNIQUEID,-,2)})" in two["extensions.conf"]
    assert "%Y%m%d-%H%M%S)}-nodea2.${ECGW_UID})" in two["extensions.conf"]

"""The alarm site registry: the shipped schools load, every problem is reported with its key, duplicates refused."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.intake.alarm.sites import Sites, check_zones, load_sites, parse_sites, token_hash

REPO = Path(__file__).resolve().parents[2]


def site_toml(account: str = "1201", token: str = "panel-token-1201", *, extra: str = "",
              contacts: str | None = None) -> str:
    if contacts is None:
        contacts = '[[sites.contacts]]\nname = "Айгуль"\nrole = "director"\nphone = "+77017120001"\n'
    return (f'[[sites]]\naccount = "{account}"\nname_kk = "№ 12 мектеп"\nname_ru = "Школа № 12"\n'
            f'address = "Алматы, ул. Толе би, 111"\nlat = 43.25\nlon = 76.92\n'
            f'panel_token_sha256 = "{token_hash(token)}"\n{extra}\n{contacts}\n')


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_sites(text, source="sites.toml")
    return caught.value.problems


def test_shipped_registry_loads_and_its_zones_exist() -> None:
    sites = load_sites(REPO / "config" / "alarm_sites.toml")
    assert len(sites) == 5
    assert sites.get("4b09") is sites.get("4B09") is not None  # accounts are read upper case
    zones = tomllib.loads((REPO / "config" / "zones.toml").read_text(encoding="utf-8"))["zones"]
    assert check_zones(sites, [z["name"] for z in zones]) == []
    assert all(site.contacts and site.contacts[0].phone.startswith("+7") for site in sites.by_account.values())


def test_a_good_site_and_its_token() -> None:
    sites = parse_sites(site_toml(extra='zone = "almaly"'))
    site = sites.get("1201")
    assert site is not None and site.name_ru == "Школа № 12" and site.zone == "almaly"
    assert sites.by_token("panel-token-1201") is site
    assert sites.by_token("panel-token-1202") is None
    assert sites.by_token("") is None


def test_unknown_zone_is_reported() -> None:
    sites = parse_sites(site_toml(extra='zone = "atlantis"'))
    found = check_zones(sites, ["almaly", "medeu"], source="sites.toml")
    assert len(found) == 1 and "1201" in found[0] and "'atlantis'" in found[0]


def test_every_problem_is_reported_with_its_key() -> None:
    bad_contacts = ('[[sites.contacts]]\nname = ""\nrole = "director"\nphone = "87017120001"\nemail = "nobody"\n'
                    '[[sites.contacts]]\nname = "Ерлан"\nrole = "security"\nphone = 77017120001\n')
    text = (site_toml("12A4", "t1", contacts=bad_contacts)
            + '[[sites]]\naccount = "1202"\nname_kk = "x"\nname_ru = ""\naddress = "a"\nlat = 95.0\nlon = 76.9\n'
              'panel_token_sha256 = "ABC"\n'
            + '[[sites]]\naccount = "1203"\nname_kk = "x"\nname_ru = "y"\naddress = "a"\nlat = "north"\nlon = 1.0\n'
              f'panel_token_sha256 = "{token_hash("t3")}"\n'
              f'contacts = [{{name = "a", role = "b", phone = "+77010000003"}}]\n')
    found = problems(text)
    expected = [
        "sites.toml: sites[0].contacts[0].name: must not be empty",
        "sites.toml: sites[0].contacts[0].phone: '87017120001' is not an E.164 number",
        "sites.toml: sites[0].contacts[0].email: 'nobody' is not an e-mail address",
        "sites.toml: sites[0].contacts[1].phone: Expected `str`, got `int`",
        "sites.toml: sites[0].account: '12A4' must be 4 Contact ID digits",
        "sites.toml: sites[1].contacts: a site needs at least one contact",
        "sites.toml: sites[1].name_ru: must not be empty",
        "sites.toml: sites[1]: lat 95.0, lon 76.9 are not coordinates",
        "sites.toml: sites[1].panel_token_sha256: must be 64 lower-case hex digits",
        "sites.toml: sites[2].lat: Expected `float`, got `str`",
    ]
    assert len(found) == len(expected), found
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start), (line, start)


def test_missing_field_names_the_site() -> None:
    text = site_toml().replace('address = "Алматы, ул. Толе би, 111"\n', "")
    assert problems(text) == ["sites.toml: sites[0]: Object missing required field `address`"]


def test_unknown_key_is_an_error() -> None:
    found = problems(site_toml(extra='adress = "typo"'))
    assert len(found) == 1 and found[0].startswith("sites.toml: sites[0]") and "adress" in found[0]


def test_duplicate_account_and_duplicate_token_are_refused() -> None:
    found = problems(site_toml("1201", "a") + site_toml("1201", "b") + site_toml("1301", "a"))
    assert len(found) == 2
    assert "account 1201 is used by both" in found[0]
    assert "sites 1201 and 1301 have the same panel token" in found[1]


def test_not_toml_and_wrong_shape() -> None:
    assert problems("[[sites]\n")[0].startswith("sites.toml: not valid TOML")
    assert problems('sites = "none"')[0].startswith("sites.toml: Expected `array`")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_sites(tmp_path / "none.toml")
    assert str(tmp_path / "none.toml") in caught.value.problems[0]


def test_empty_registry_is_allowed() -> None:
    assert len(parse_sites("")) == 0 and isinstance(parse_sites(""), Sites)

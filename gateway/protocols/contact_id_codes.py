"""The Contact ID (SIA DC-05) event codes: what each one is called and which category this centre files
it under (pure data, no I/O). ``gateway.protocols.contact_id`` reads it.

The codes and names are those of the event code appendix of SIA DC-05-1999.09, as open-source
receivers publish the list (spandsp's ``ademco_contactid.c``, homebridge-envisalink-ademco's
``cid.js``, asterisk-contact-id's ``asteriskcontactid.pl`` agree on it), plus the Ademco 9xx codes
that spandsp lists. The categories are this centre's reading: DC-05 groups codes by their first
digit (1 alarms, 2 supervisory, 3 troubles, 4 open/close and access, 5 bypasses and disables, 6 test
and miscellaneous) and this table follows the groups, except tampers (filed as ``tamper`` wherever
they sit) and the 1xx codes that DC-05 counts as alarms, which keep an alarm category. A code not in
the table is described by its group (``GROUPS``); ``gateway.intake.alarm.panels.classify`` opens an
incident for any unknown 1xx code, because an alarm must never be lost for want of a table entry.
"""

from __future__ import annotations

from typing import Literal

Category = Literal[
    "medical",
    "fire",
    "panic",
    "duress",
    "burglary",
    "tamper",
    "hazard",  # gas, CO, water, temperature: the 24-hour non-burglary group
    "trouble",
    "test",
    "opening/closing",
    "bypass",
    "other",
]


def _codes(category: Category, table: dict[str, str]) -> dict[str, tuple[str, Category]]:
    return {code: (name, category) for code, name in table.items()}


EVENT_CODES: dict[str, tuple[str, Category]] = {
    **_codes("medical", {"100": "Medical emergency", "101": "Personal emergency", "102": "Failed to report in"}),
    **_codes("fire", {
        "110": "Fire alarm", "111": "Smoke detector", "112": "Combustion", "113": "Sprinkler water flow",
        "114": "Heat detector", "115": "Manual fire call point", "116": "Duct smoke detector",
        "117": "Flame detector", "118": "Fire near alarm",
    }),
    **_codes("panic", {"120": "Panic alarm", "122": "Silent panic", "123": "Audible panic"}),
    **_codes("duress", {"121": "Duress", "124": "Duress: access granted", "125": "Duress: egress granted"}),
    **_codes("burglary", {
        "130": "Burglary", "131": "Perimeter burglary", "132": "Interior burglary", "133": "24-hour burglary (safe)",
        "134": "Entry/exit burglary", "135": "Day/night burglary", "136": "Outdoor burglary",
        "138": "Burglary near alarm", "139": "Intrusion verified", "140": "General alarm",
        # DC-05 reports these as alarms of the general-alarm group, so they stay alarms here
        "141": "Polling loop open", "142": "Polling loop short", "143": "Expansion module failure",
        "146": "Silent burglary", "147": "Sensor supervision failure", "155": "Foil break",
    }),
    **_codes("tamper", {
        "137": "Tamper", "144": "Sensor tamper", "145": "Expansion module tamper", "341": "Expansion module tamper",
        "383": "Sensor tamper",
    }),
    **_codes("hazard", {
        "150": "24-hour non-burglary alarm", "151": "Gas detected", "152": "Refrigeration failure",
        "153": "Loss of heat", "154": "Water leakage", "157": "Low bottled gas level", "158": "High temperature",
        "159": "Low temperature", "161": "Loss of air flow", "162": "Carbon monoxide detected", "163": "Tank level",
    }),
    **_codes("trouble", {
        "156": "Day trouble",
        # 2xx supervisory
        "200": "Fire supervisory", "201": "Low water pressure", "202": "Low CO2", "203": "Gate valve sensor",
        "204": "Low water level", "205": "Pump activated", "206": "Pump failure",
        # 30x-31x system troubles
        "300": "System trouble", "301": "AC power loss", "302": "Low system battery", "303": "RAM checksum bad",
        "304": "ROM checksum bad", "305": "System reset", "306": "Panel programming changed",
        "307": "Self-test failure", "308": "System shutdown", "309": "Battery test failure", "310": "Ground fault",
        "311": "Battery missing or dead", "312": "Power supply overcurrent", "313": "Engineer reset",
        # 32x sounder/relay troubles
        "320": "Sounder/relay trouble", "321": "Bell 1 trouble", "322": "Bell 2 trouble", "323": "Alarm relay trouble",
        "324": "Trouble relay trouble", "325": "Reversing relay trouble",
        "326": "Notification appliance circuit 3 trouble", "327": "Notification appliance circuit 4 trouble",
        # 33x-34x system peripheral troubles
        "330": "System peripheral trouble", "331": "Polling loop open", "332": "Polling loop short",
        "333": "Expansion module failure", "334": "Repeater failure", "335": "Local printer out of paper",
        "336": "Local printer failure", "337": "Expansion module DC loss", "338": "Expansion module low battery",
        "339": "Expansion module reset", "342": "Expansion module AC loss", "343": "Expansion module self-test failure",
        "344": "RF receiver jam detected",
        # 35x communication troubles
        "350": "Communication trouble", "351": "Telephone line 1 fault", "352": "Telephone line 2 fault",
        "353": "Long range radio transmitter fault", "354": "Failure to communicate event",
        "355": "Loss of radio supervision", "356": "Loss of central polling", "357": "Long range radio VSWR problem",
        # 37x protection loop troubles
        "370": "Protection loop trouble", "371": "Protection loop open", "372": "Protection loop short",
        "373": "Fire loop trouble", "374": "Exit error alarm (zone)", "375": "Panic zone trouble",
        "376": "Hold-up zone trouble", "377": "Swinger trouble", "378": "Cross-zone trouble",
        # 38x-39x sensor troubles
        "380": "Sensor trouble", "381": "Loss of RF supervision", "382": "Loss of RPM supervision",
        "384": "RF transmitter low battery", "385": "Smoke detector high sensitivity",
        "386": "Smoke detector low sensitivity", "387": "Intrusion detector high sensitivity",
        "388": "Intrusion detector low sensitivity", "389": "Sensor self-test failure",
        "391": "Sensor watch trouble", "392": "Drift compensation error", "393": "Maintenance alert",
        "641": "Senior watch trouble",
    }),
    **_codes("opening/closing", {
        "400": "Open/close", "401": "Open/close by user", "402": "Group open/close", "403": "Automatic open/close",
        "404": "Late to open/close", "405": "Deferred open/close", "406": "Alarm cancelled by user",
        "407": "Remote arm/disarm", "408": "Quick arm", "409": "Keyswitch open/close", "441": "Armed STAY",
        "442": "Keyswitch armed STAY", "450": "Exception open/close", "451": "Early open/close",
        "452": "Late open/close", "453": "Failed to open", "454": "Failed to close", "455": "Auto-arm failed",
        "456": "Partial arm", "457": "Exit error (user)", "458": "User on premises", "459": "Recent close",
        "463": "Re-arm after alarm", "464": "Auto-arm time extended", "910": "Auto-close with bypass",
        "911": "Bypass closing",
    }),
    **_codes("other", {
        # 41x remote access
        "411": "Callback request made", "412": "Successful download/access", "413": "Unsuccessful access",
        "414": "System shutdown command received", "415": "Dialer shutdown command received",
        "416": "Successful upload",
        # 42x-43x access control
        "421": "Access denied", "422": "Access report by user", "423": "Forced access", "424": "Egress denied",
        "425": "Egress granted", "426": "Access door propped open", "427": "Access point door status monitor trouble",
        "428": "Access point request-to-exit trouble", "429": "Access program mode entry",
        "430": "Access program mode exit", "431": "Access threat level change", "432": "Access relay/trigger failure",
        "433": "Access request-to-exit shunt", "434": "Access door status monitor shunt",
        "461": "Wrong code entry", "462": "Legal code entry", "465": "Panic alarm reset",
        "466": "Service on/off premises", "531": "Module added", "532": "Module removed",
        # 6xx miscellaneous; AlarmReceiver hangs up its side after kissing off a 606, so the dialplan can
        # open the audio
        "605": "Status report to follow", "606": "Listen-in to follow", "609": "Video transmitter active",
        "616": "Service request", "621": "Event log reset", "622": "Event log 50% full", "623": "Event log 90% full",
        "624": "Event log overflow", "625": "Time/date reset", "626": "Time/date inaccurate",
        "627": "Program mode entered", "628": "Program mode exited", "629": "32-hour event log marker",
        "630": "Schedule change", "631": "Exception schedule change", "632": "Access schedule change",
        "642": "Latch-key supervision", "651": "Reserved for Ademco use", "652": "Reserved for Ademco use",
        "653": "Reserved for Ademco use", "654": "System inactivity",
        # Ademco 9xx
        "900": "Download abort", "901": "Download start/end", "902": "Download interrupted",
        "999": "32-hour no read of event log",
    }),
    **_codes("bypass", {
        "501": "Access reader disable", "520": "Sounder/relay disable", "521": "Bell 1 disable",
        "522": "Bell 2 disable", "523": "Alarm relay disable", "524": "Trouble relay disable",
        "525": "Reversing relay disable", "526": "Notification appliance circuit 3 disable",
        "527": "Notification appliance circuit 4 disable", "551": "Dialer disabled",
        "552": "Radio transmitter disabled", "553": "Remote upload/download disabled", "570": "Zone bypass",
        "571": "Fire zone bypass", "572": "24-hour zone bypass", "573": "Burglary zone bypass", "574": "Group bypass",
        "575": "Swinger bypass", "576": "Access zone shunt", "577": "Access point bypass",
    }),
    **_codes("test", {
        "601": "Manual test report", "602": "Periodic test report", "603": "Periodic RF transmission",
        "604": "Fire test", "607": "Walk test mode", "608": "Periodic test report, trouble present",
        "611": "Point tested OK", "612": "Point not tested", "613": "Intrusion zone walk tested",
        "614": "Fire zone walk tested", "615": "Panic zone walk tested",
    }),
}

# Code groups by prefix, most specific first. An unknown 6xx stays "other", never "test": the group
# also holds 605/606 (a report or a listen-in follows), so guessing "test" could hide a real call.
GROUPS: tuple[tuple[str, str, Category], ...] = (
    ("10", "medical alarm", "medical"),
    ("11", "fire alarm", "fire"),
    ("12", "panic alarm", "panic"),
    ("13", "burglary", "burglary"),
    ("14", "general alarm", "burglary"),
    ("15", "24-hour non-burglary alarm", "hazard"),
    ("16", "24-hour non-burglary alarm", "hazard"),
    ("1", "alarm", "other"),
    ("2", "supervisory", "trouble"),
    ("3", "trouble", "trouble"),
    ("4", "open/close or access", "opening/closing"),
    ("5", "bypass or disable", "bypass"),
    ("6", "test or miscellaneous", "other"),
)

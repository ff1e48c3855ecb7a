"""The JSON Schema (draft 2020-12) of ``report.json``, schema version 1.

Published as ``docs/report.schema.json``, generated from here:

    python -m labsim.observe.report_schema > docs/report.schema.json

(a test checks the two agree, and that a real run's report validates). Every field
labsim writes is described and required, with its type. Objects that grow as labsim
grows (the top level, the summary, a phone, service and network counters, flash, a
timeline entry) accept fields the schema does not know yet, so a reader validating
with this schema keeps working when a field is added within schema version 1; the
small fixed shapes (statistics, an expectation, a phone's event, ``by_state``) are closed.
"""

from __future__ import annotations

import json
import sys

from labsim.observe.report import SCHEMA_VERSION
from labsim.phones.phone import STATES

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_COUNTERS = {"type": "object", "additionalProperties": {"type": ["integer", "number", "object"]}}

STATS = {
    "type": "object",
    "description": "Nearest-rank statistics over some durations, seconds; null when there are none.",
    "properties": {"count": {"type": "integer", "minimum": 0},
                   **{name: _NUMBER_OR_NULL for name in ("p50", "p90", "p95", "p99", "max", "mean")}},
    "required": ["count", "p50", "p90", "p95", "p99", "max", "mean"],
    "additionalProperties": False,
}

EXPECTATION = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "check": {"type": "string", "description": "METRIC OP VALUE, e.g. 'phones.ready == 100%'"},
        "passed": {"type": "boolean"},
        "observed": {
            "description": "a number; for per-phone checks {min, max}; for flash checks {phones, failing}; "
                           "null when there was no data",
            "anyOf": [
                {"type": "number"},
                {"type": "null"},
                {"type": "object", "properties": {"min": {"type": "number"}, "max": {"type": "number"}},
                 "required": ["min", "max"], "additionalProperties": False},
                {"type": "object", "properties": {"phones": {"type": "integer"}, "failing": {"type": "integer"}},
                 "required": ["phones", "failing"], "additionalProperties": False},
            ],
        },
        "detail": {"type": "string"},
    },
    "required": ["name", "check", "passed", "observed", "detail"],
    "additionalProperties": False,
}

EVENT = {
    "type": "object",
    "properties": {
        "t": {"type": "number", "description": "seconds from the start of the run"},
        "kind": {"enum": ["state", "step"]},
        "state": {"enum": list(STATES)},
        "detail": {"type": "string"},
    },
    "required": ["t", "kind", "state", "detail"],
    "additionalProperties": False,
}

TIMELINE_ENTRY = {
    "type": "object",
    "description": "one action of the scenario's timeline, as it was carried out",
    "properties": {
        "t": {"type": "number", "description": "seconds from the start of the run"},
        "entry": {"type": "string", "description": "the timeline entry, as written"},
        "action": {"type": "string"},
        "outcome": {"type": "string"},
    },
    "required": ["t", "entry", "action", "outcome"],
}

SERVER = {
    "type": "object",
    "description": "the downloads from one server (a load test's numbers)",
    "properties": {
        "requests": {"type": "integer", "minimum": 0},
        "errors": {"type": "integer", "minimum": 0,
                   "description": "requests that are neither ok nor optional_missing"},
        "by_status": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0},
                      "description": "download outcome (ok, not_found, optional_missing: not found, a file the "
                                     "phone only looks for and a deployment need not have, such as a Yealink's "
                                     "boot files, so no error; denied, timeout, refused, dns: the host "
                                     "name did not resolve, nothing reached the server; an error by its kind: "
                                     "error HTTP 503, error connection refused, error connection lost, error timed "
                                     "out, error TFTP N, error FTP NNN, error not supported, else error) "
                                     "-> count"},
        "latency_s": {**STATS, "description": "the requests' durations, those that never reached the server "
                                              "(dns) left out; null when none did"},
    },
    "required": ["requests", "errors", "by_status", "latency_s"],
}

_CAUSE_PROPERTIES = {
    "reason": {"type": "string", "description": "the phone's failure, or for a stuck phone where it stopped "
                                                "(no DHCP lease yet, still provisioning ...)"},
    "server": {"type": ["string", "null"], "description": "the server (or URL) the phone used"},
    "server_from": {"type": ["string", "null"], "description": "where the phone got it: DHCP option 66, flash ..."},
    "error": {"type": ["string", "null"], "description": "the last failed download's error (connection refused, "
                                                       "HTTP 404 ...) unless a later one succeeded"},
}
CAUSE = {
    "type": ["object", "null"],
    "description": "why a failed or stuck phone is not ready; null for a ready phone",
    "properties": _CAUSE_PROPERTIES,
    "required": list(_CAUSE_PROPERTIES),
    "additionalProperties": False,
}
PROBLEM = {
    "type": "object",
    "description": "failed or stuck phones with the same state, reason, server, source and error",
    "properties": {
        "state": {"enum": list(STATES)},
        "count": {"type": "integer", "minimum": 1},
        **_CAUSE_PROPERTIES,
        "macs": {"type": "array", "items": {"type": "string"}, "maxItems": 5, "description": "the first few phones"},
    },
    "required": ["state", "count", *_CAUSE_PROPERTIES, "macs"],
    "additionalProperties": False,
}

PHONE = {
    "type": "object",
    "properties": {
        "mac": {"type": "string", "pattern": "^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"},
        "vendor": {"type": "string"},
        "model": {"type": "string"},
        "fleet": {"type": "string"},
        "state": {"enum": list(STATES)},
        "failure": {"type": ["string", "null"]},
        "cause": CAUSE,
        "reboots": {"type": "integer", "minimum": 0},
        "power_cycles": {"type": "integer", "minimum": 0, "description": "power cycles by the scenario's timeline"},
        "powered_on_at_s": _NUMBER_OR_NULL,
        "ready_at_s": _NUMBER_OR_NULL,
        "files": {"type": "object", "additionalProperties": {"type": "string"},
                  "description": "file name -> MD5 of the file the phone applied"},
        "flash": {"type": "object", "description": "what the phone keeps across reboots (vendor-dependent)",
                  "properties": {"firmware": {"type": ["string", "null"]},
                                 "file_md5": {"type": "object", "additionalProperties": {"type": "string"}},
                                 "provisioning_url": {"type": ["string", "null"]},
                                 "profiles": {"type": "object"},
                                 "kept_files": {"type": "object", "additionalProperties": {"type": "string"},
                                                "description": "files the phone keeps to read later (Yealink's "
                                                               "AutoDST.xml): name -> MD5 of its text"},
                                 "settings_count": {"type": "integer", "minimum": 0}}},
        "events": {"type": "array", "items": EVENT},
        "events_dropped": {"type": "integer", "minimum": 1, "description": "events left out of this list in a "
                           "long run (its first and last ones are kept); every one is in events.jsonl"},
        "events_dropped_between": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                                   "description": "the times (s) of the kept events just before and just after "
                                                  "the left-out ones"},
    },
    "required": ["mac", "vendor", "model", "fleet", "state", "failure", "cause", "reboots", "power_cycles", "powered_on_at_s",
                 "ready_at_s", "files", "flash", "events"],
}

REPORT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "labsim report.json",
    "description": "The report of one `labsim run` (docs/report.md explains every field).",
    "type": "object",
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "scenario": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "file": {"type": "string"}, "seed": {"type": "integer"}},
            "required": ["name", "file", "seed"],
            "additionalProperties": False,
        },
        "started": {"type": "string", "description": "ISO 8601 UTC time the fleet started; empty if it never did"},
        "duration_s": {"type": "number", "minimum": 0},
        "complete": {"type": "boolean"},
        "end_reason": {"type": "string"},
        "clock": {"enum": ["real", "virtual"], "description": "virtual: a run in virtual time (--clock virtual)"},
        "simulated": {
            "description": "a virtual run's simulated time (its calendar starts at the scenario's clock_starts, "
                           "else 2026-01-04T00:00:00+00:00); null on the real clock",
            "anyOf": [
                {"type": "null"},
                {"type": "object",
                 "properties": {"from": {"type": "string", "description": "ISO 8601 UTC, on the virtual calendar"},
                                "to": {"type": "string", "description": "ISO 8601 UTC, on the virtual calendar"},
                                "duration_s": {"type": "number", "minimum": 0,
                                               "description": "simulated seconds from the fleet's start to the end"}},
                 "required": ["from", "to", "duration_s"], "additionalProperties": False},
            ],
        },
        "passed": {"type": "boolean"},
        "notes": {"type": "array", "items": {"type": "string"},
                  "description": "what labsim said about the scenario before the run, each with its file, line "
                                 "and field: a DHCP pool smaller than the phones that lease from it; with --phones, "
                                 "each count the fleet's size changes that is kept as written (an expectation, a "
                                 "when:, an action on a number of phones); with --state-dir, what the run takes from "
                                 "its file"},
        "expectations": {"type": "array", "items": EXPECTATION},
        "summary": {
            "type": "object",
            "properties": {
                "phones": {"type": "integer", "minimum": 0},
                "by_state": {"type": "object",
                             "properties": {state: {"type": "integer", "minimum": 0} for state in STATES},
                             "required": list(STATES), "additionalProperties": False},
                "reboots_total": {"type": "integer", "minimum": 0},
                "time_to_ready_s": STATS,
                "stages_s": {"type": "object", "additionalProperties": STATS},
                "servers": {"type": "object", "additionalProperties": SERVER,
                            "description": "server URL (http://127.0.0.1:8080, tftp://...) -> its downloads"},
                "problems": {"type": "array", "items": PROBLEM,
                             "description": "failed and stuck phones grouped by cause, largest group first"},
            },
            "required": ["phones", "by_state", "reboots_total", "time_to_ready_s", "stages_s", "servers", "problems"],
        },
        "services": {"type": "object", "description": "each service that ran -> its counters",
                     "additionalProperties": _COUNTERS},
        "network": {"type": "object",
                    "description": "the fleet's relay counters, fetch_refused, dns_failures (downloads whose host "
                                   "name did not resolve), dns_lookups (what the phones' lookups did: lookups, "
                                   "cache_hits, queries, failures, held, truncated, tcp_queries, tcp_failures), "
                                   "faults (what the scenario's faults did) and "
                                   "power_on_lateness_ms (phones by how late they powered on)",
                    "additionalProperties": {"type": ["integer", "number", "object"]}},
        "timeline": {"type": "array", "items": TIMELINE_ENTRY},
        "timeline_not_run": {
            "type": "array",
            "description": "each entry of the scenario's timeline that never carried out its actions, and why: a "
                           "when: whose condition never held, an at: after the run's end. Empty when all ran",
            "items": {"type": "object",
                      "properties": {"entry": {"type": "string", "description": "as `timeline` names it: its name, "
                                                                                 "else 'at 30s' or 'when …'"},
                                     "why": {"type": "string"}},
                      "required": ["entry", "why"], "additionalProperties": False}},
        "uploads": {"type": "array", "description": "every file the lab's services stored from an upload (HTTP PUT, "
                    "TFTP WRQ, FTP STOR), where it is now",
                    "items": {"type": "object", "properties": {"path": {"type": "string"},
                                                               "bytes": {"type": "integer"}},
                              "required": ["path", "bytes"], "additionalProperties": False}},
        "phones": {"type": "array", "items": PHONE},
        "series": {
            "type": "object", "description": "requests per service and phones per state over time (observe/series.py)",
            "properties": {
                "bucket_s": {"type": "integer", "minimum": 1},
                "requests": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}}},
                "states": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}}},
                "peaks": {"type": "object", "additionalProperties": {"type": "number"}},
            },
            "required": ["bucket_s", "requests", "states", "peaks"],
            "additionalProperties": False,
        },
    },
    "required": ["schema_version", "scenario", "started", "duration_s", "complete", "end_reason", "clock", "simulated",
                 "passed", "notes", "expectations", "summary", "services", "network", "timeline",
                 "timeline_not_run", "uploads", "phones"],
}


def schema_text() -> str:
    return json.dumps(REPORT_SCHEMA, indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_text())

"""What the REST API does, apart from HTTP: tokens, hashing, scenarios, runs and batches as
the API shows them, idempotent replays and JUnit XML.

Runs are started, cancelled and deleted by the runs app's own services
(``labsite.runs.submit``, ``labsite.runs.services``), scenarios checked by the engine's
loader exactly as the lab page checks them (``labsite.runs.submit.scenario_prepare``),
so the API and the lab can never disagree about what is valid. A token::

    token, secret = token_create(user=user, name="ci")   # secret is shown once
    token_authenticate(secret) == token                  # what each request does
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from xml.etree import ElementTree

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, Q, QuerySet
from django.utils import timezone
from django.utils.text import slugify

from labsite.api.models import ApiToken, IdempotencyRecord
from labsite.lab.errors import LabInputError, LabNotFound, error_entry
from labsite.lab.models import Scenario
from labsite.lab.selectors import user_is_instructor
from labsite.runs import engine_bridge
from labsite.runs.models import Batch, Run
from labsite.runs.selectors import run_get_for_user
from labsite.runs.submit import BatchItem, batch_submit, lab_run_submit, scenario_prepare

#: The version of the result shapes (a run's, a batch's) this API returns.
RESULT_SCHEMA_VERSION = 1
#: The engine's per-flow verdicts, the API's vocabulary (``engine.appliance.verdicts``),
#: with the summary figure that counts each.
VERDICT_COUNTS = {"symmetric": "symmetric", "handed-off": "handed_off",
                  "refused": "refused", "asymmetric": "asymmetric"}
TOKEN_PREFIX = "rsl_"
TOKEN_PREFIX_CHARS = 12  # "rsl_" + 8 random characters, kept in clear


class ApiConflict(Exception):
    """The request is well formed but the resource's state refuses it (409): ``field``
    names what, the message says why."""

    def __init__(self, field: str, message: str, *, code: str = "conflict"):
        super().__init__(message)
        self.field = field
        self.code = code


class ApiUnprocessable(ApiConflict):
    """422: e.g. an ``Idempotency-Key`` reused with another request body."""


# ------------------------------------------------------------------------------- tokens


class TokenRefused(Exception):
    """A bearer token that does not authenticate: ``code`` says why (unknown, revoked,
    expired, inactive user)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_create(*, user, name: str, read_only: bool = False,
                 expires_at=None) -> tuple[ApiToken, str]:
    """A new token of ``user`` and its secret (returned once; only its digest is kept)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name[:100] or "token",
                                    prefix=secret[:TOKEN_PREFIX_CHARS],
                                    digest=token_digest(secret), read_only=read_only,
                                    expires_at=expires_at)
    return token, secret


def token_revoke(token: ApiToken) -> bool:
    """Revoke ``token`` (kept, so its owner sees when); False when it already was."""
    return bool(ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True)
                .update(revoked_at=timezone.now()))


def token_list(*, user) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-pk")


def token_authenticate(secret: str) -> ApiToken:
    """The token whose secret is ``secret``; TokenRefused otherwise. Records when it was
    last used (at most every API_TOKEN_TOUCH_SECONDS, not a write per request)."""
    token = (ApiToken.objects.select_related("user").filter(digest=token_digest(secret))
             .first())
    if token is None:
        raise TokenRefused("token_unknown", "expected a valid API token")
    if token.revoked:
        raise TokenRefused("token_revoked", f"token {token.prefix}… was revoked")
    now = timezone.now()
    if token.is_expired(now):
        raise TokenRefused("token_expired", f"token {token.prefix}… expired on "
                                            f"{token.expires_at:%Y-%m-%d %H:%M} UTC")
    if not token.user.is_active:
        raise TokenRefused("user_inactive", "the token's user is inactive")
    touch = timedelta(seconds=settings.API_TOKEN_TOUCH_SECONDS)
    if token.last_used_at is None or token.last_used_at < now - touch:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


# ------------------------------------------------------------------------------ hashing


def hash_tuples(*, tuples: list[dict], key: str = "microsoft", cores: int = 4,
                hash_bits: int = 7, table: list[int] | None = None,
                transform: str = "none") -> list[dict[str, Any]]:
    """Hash, bucket and core of every tuple (``src``, ``dst``, optional ``sport`` and
    ``dport``) under one NIC: the engine's vectorised path (``Nic.steer_ipv4_batch``) for
    IPv4, its batch Toeplitz hash for IPv6. ``table`` lists the core of each of the
    ``2 ** hash_bits`` buckets (default round robin over ``cores``); ``transform`` is the
    NIC's input transform. Raises LabInputError naming each bad tuple
    (``tuples[3].sport``; at most 100 listed) or option.
    """
    import numpy as np

    from engine.errors import RssLabError
    from engine.nic.rss import IndirectionTable, Nic, Transform, transform_input
    from engine.packet.toeplitz import check_port, parse_address, parse_key, toeplitz_hash_batch

    try:
        nic_key = parse_key(key)
        indirection = (IndirectionTable(cores, hash_bits, tuple(table)) if table is not None
                       else IndirectionTable.round_robin(cores, hash_bits))
        nic = Nic(nic_key, indirection, transform=Transform(transform))
    except RssLabError as error:
        raise LabInputError.from_engine(error) from None
    groups: dict[tuple, list] = {}  # (family, with ports) -> [(index, src, dst, sport, dport)]
    errors = []
    for index, item in enumerate(tuples):
        try:
            src = parse_address(item.get("src"), "src")
            dst = parse_address(item.get("dst"), "dst")
            if src.version != dst.version:
                raise LabInputError.one("dst", f"expected an IPv{src.version} address like "
                                               f"src, got {str(dst)!r}", code="tuple")
            sport, dport = item.get("sport"), item.get("dport")
            if (sport is None) != (dport is None):
                raise LabInputError.one("dport" if dport is None else "sport",
                                        "expected both ports or neither", code="tuple")
            ports = None if sport is None else (check_port(sport, "sport"),
                                                check_port(dport, "dport"))
        except RssLabError as error:
            errors.append(error_entry(f"tuples[{index}].{error.field}", error.problem,
                                      code=error.code))
        except LabInputError as error:
            errors += [{**e, "field": f"tuples[{index}].{e['field']}"} for e in error.errors]
        else:
            groups.setdefault((src.version, ports is not None), []).append(
                (index, src, dst, ports))
        if len(errors) >= 100:
            break
    if errors:
        raise LabInputError(errors)
    results: list[dict[str, Any] | None] = [None] * len(tuples)
    for (version, with_ports), members in groups.items():
        indexes = [m[0] for m in members]
        if version == 4:
            src = np.fromiter((int(m[1]) for m in members), np.uint32, len(members))
            dst = np.fromiter((int(m[2]) for m in members), np.uint32, len(members))
            sport = dport = None
            if with_ports:
                sport = np.fromiter((m[3][0] for m in members), np.uint32, len(members))
                dport = np.fromiter((m[3][1] for m in members), np.uint32, len(members))
            hashes, buckets, found = nic.steer_ipv4_batch(src, dst, sport, dport)
        else:
            rows = [transform_input(nic.transform, m[1].packed + m[2].packed + (
                m[3][0].to_bytes(2, "big") + m[3][1].to_bytes(2, "big") if with_ports
                else b"")) for m in members]
            data = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), -1)
            try:
                hashes = toeplitz_hash_batch(nic_key, data)
            except RssLabError as error:
                raise LabInputError.from_engine(error) from None
            buckets = hashes & np.uint32(indirection.mask)
            found = indirection.as_array()[buckets]
        for index, value, bucket, core in zip(indexes, hashes.tolist(), buckets.tolist(),
                                              found.tolist()):
            results[index] = {"hash": f"0x{value:08x}", "bucket": bucket, "core": core}
    return results


# ---------------------------------------------------------------------------- scenarios


def scenarios_visible(*, user) -> QuerySet[Scenario]:
    """Scenarios ``user`` may read and run: their own and the examples; an instructor's,
    every one."""
    scenarios = Scenario.objects.select_related("owner").order_by("name", "pk")
    if user_is_instructor(user):
        return scenarios
    return scenarios.filter(Q(owner=user) | ~Q(example=""))


def scenario_get(*, user, scenario_id: int) -> Scenario:
    scenario = scenarios_visible(user=user).filter(pk=scenario_id).first()
    if scenario is None:
        raise LabNotFound("scenario", f"no scenario {scenario_id}, or not yours")
    return scenario


def scenario_editable(*, user, scenario_id: int) -> Scenario:
    """A scenario ``user`` may change or delete: their own (instructors: any that is not
    an engine example, which the beat process owns)."""
    scenario = scenario_get(user=user, scenario_id=scenario_id)
    if scenario.owner_id == user.pk:
        return scenario
    if scenario.example or not user_is_instructor(user):
        raise PermissionError(f"scenario {scenario_id} is not yours to change")
    return scenario


def scenario_check(text: Any, *, mode: str = "batch") -> dict[str, Any]:
    """Check scenario ``text`` as the lab page checks it before a run (the engine's loader:
    every problem with its line and key path); nothing is stored. Returns ``{"valid",
    "errors", "name", "flows"}``; a scenario that replays a capture is checked without
    counting its flows (the capture comes with the run)."""
    if not isinstance(text, str) or not text.strip():
        raise LabInputError.one("scenario", "expected the scenario's YAML or JSON text")
    try:
        prepared = scenario_prepare(data={"source": "yaml", "scenario": text}, mode=mode)
    except LabInputError as error:
        only_capture = [e for e in error.errors if e["field"] == "pcap"]
        if only_capture and len(only_capture) == len(error.errors):
            scenario = engine_bridge.load(text)
            return {"valid": True, "errors": [], "name": scenario.name, "flows": None}
        return {"valid": False, "errors": error.errors, "name": None, "flows": None}
    return {"valid": True, "errors": [], "name": prepared.scenario.name,
            "flows": prepared.flows}


def _scenario_loaded(text: Any):
    """The engine's Scenario for ``text``; LabInputError with every problem otherwise."""
    result = scenario_check(text)
    if not result["valid"]:
        raise LabInputError(result["errors"])
    return result


def scenario_create(*, user, text: Any, name: str = "", description: str = "") -> Scenario:
    """Store a scenario of ``user`` after the engine accepts it (LabInputError with every
    problem otherwise)."""
    checked = _scenario_loaded(text)
    name = (name or checked["name"] or "scenario")[:200]
    slug = f"{slugify(name)[:150] or 'scenario'}-{secrets.token_hex(4)}"
    return Scenario.objects.create(name=name, slug=slug, description=description,
                                   body=text, owner=user)


def scenario_update(scenario: Scenario, *, text: Any = None, name: str | None = None,
                    description: str | None = None) -> Scenario:
    """Change a stored scenario; new text is checked by the engine first. Runs made from
    it keep the text they ran."""
    if text is not None:
        _scenario_loaded(text)
        scenario.body = text
    if name:
        scenario.name = name[:200]
    if description is not None:
        scenario.description = description
    scenario.save()
    return scenario


def scenario_delete(scenario: Scenario) -> None:
    """Delete a stored scenario; ApiConflict (409) while runs made from it exist (their
    results keep the scenario they came from)."""
    try:
        scenario.delete()
    except ProtectedError:
        raise ApiConflict("scenario", f"scenario {scenario.pk} has runs; delete them "
                                      f"first") from None


# --------------------------------------------------------------------------------- runs


def run_submit(*, user, scenario_id: int | None, text: str | None, mode: str,
               seed: int | None, upload=None) -> Run:
    """Queue a run of a stored scenario (one ``user`` may read) or of ``text``, through
    the lab's own submit (fair use, limits, the engine's checks)."""
    data: dict[str, Any] = {"mode": mode}
    if seed is not None:
        data["seed"] = seed
    stored = None
    if scenario_id is not None:
        stored = scenario_get(user=user, scenario_id=scenario_id)
        data["source"] = "stored"
    else:
        data.update(source="yaml", scenario=text)
    return lab_run_submit(user=user, data=data, upload=upload, stored=stored).run


def run_visible(*, user, run_id: int) -> Run:
    run = run_get_for_user(user=user, run_id=run_id)
    if run is None:
        raise LabNotFound("run", f"no run {run_id}, or not yours")
    return run


def run_verdict(run: Run) -> dict[str, Any] | None:
    """The run's verdict in the engine's vocabulary, None before it has one: ``passed``
    and the flows counted per verdict (``symmetric``, ``handed-off``, ``refused``,
    ``asymmetric``)."""
    summary = run.summary or {}
    if "symmetric" not in summary:
        return None
    counts = {name: int(summary.get(figure, summary.get("allocation_failures", 0)
                                    if figure == "refused" else 0))
              for name, figure in VERDICT_COUNTS.items()}
    return {"passed": bool(summary.get("passed")), "flows": int(summary.get("flows", 0)),
            "counts": counts, "line": run.verdict}


def _seconds(start, end) -> float | None:
    return None if start is None or end is None else round((end - start).total_seconds(), 3)


def run_result(run: Run) -> dict[str, Any]:
    """A run as the API returns it (see ``serializers.RunSerializer``)."""
    report = run.report or {}
    verdict = run_verdict(run)
    return {
        "id": run.pk, "schema_version": RESULT_SCHEMA_VERSION,
        "report_schema_version": report.get("schema_version"),
        "title": run.title, "mode": run.mode, "seed": run.seed, "status": run.status,
        "progress": run.progress, "error": run.error, "scenario_id": run.scenario_id,
        "batch_id": run.batch_id,
        "passed": None if verdict is None else verdict["passed"], "verdict": verdict,
        "summary": run.summary or {}, "checks": report.get("checks", []),
        "rows_total": report.get("rows_total"), "rows_kept": len(report.get("rows", [])),
        "timings": {"created_at": run.created_at, "started_at": run.started_at,
                    "finished_at": run.finished_at,
                    "queued_seconds": _seconds(run.created_at, run.started_at),
                    "run_seconds": _seconds(run.started_at, run.finished_at)},
    }


def run_rows(run: Run, *, verdict: str | None = None) -> list[dict]:
    """The per-flow rows the run kept (its report's first RUN_REPORT_ROWS), those of
    ``verdict`` only when given."""
    rows = (run.report or {}).get("rows", [])
    if verdict is None:
        return rows
    return [row for row in rows if row.get("verdict") == verdict]


def run_report_html(run: Run) -> str:
    """The engine's HTML report of a succeeded run, rebuilt from its stored report
    (``engine_bridge.report_html``: nothing is run again); ApiConflict otherwise."""
    if run.status != Run.Status.SUCCEEDED or not engine_bridge.has_report(run.report):
        raise ApiConflict("run", f"run {run.pk} is {run.status}: only a succeeded run has "
                                 f"an HTML report")
    return engine_bridge.report_html(run.report)


# ------------------------------------------------------------------------------ batches

#: Where a compare axis (``engine.runs.compare.SETTINGS``) lives in a scenario file.
VARIATION_PATHS = {"key": ("system", "nic", "key"), "transform": ("system", "nic", "transform"),
                   "strategy": ("ports", "strategy"), "handoff": ("handoff",)}


def scenario_varied(text: str, variation: dict[str, str], *, field: str) -> str:
    """``text`` with the settings of ``variation`` (the engine's compare axes: ``key``,
    ``policy`` — every service's —, ``strategy``, ``transform``, ``handoff``), as JSON.
    Raises LabInputError on ``field`` for an axis the engine does not vary."""
    from engine.errors import ScenarioError
    from engine.runs.compare import SETTINGS
    from engine.scenarios.scenario.document import parse_document

    unknown = sorted(set(variation) - set(SETTINGS))
    if unknown:
        raise LabInputError.one(field, f"expected settings among {', '.join(SETTINGS)}, got "
                                       f"{', '.join(unknown)}")
    try:
        data, _lines = parse_document(text, "scenario", [])
    except ScenarioError as error:
        raise LabInputError([error_entry(p.path or "scenario", p.message, code="scenario",
                                         line=p.line) for p in error.problems]) from None
    if not isinstance(data, dict):
        raise LabInputError.one("scenario", "expected a mapping of sections")
    for name, value in variation.items():
        if name == "policy":
            for service in data.get("services") or []:
                if isinstance(service, dict):
                    service["policy"] = value
            continue
        node = data
        *parents, leaf = VARIATION_PATHS[name]
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node.get(part), dict | None) else {}
        node[leaf] = value
    return json.dumps(data, indent=1)


def variation_label(variation: dict[str, str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in variation.items()) or "as written"


def batch_create(*, user, items: list[dict] | None = None, scenario_id: int | None = None,
                 text: str | None = None, variations: list[dict] | None = None,
                 mode: str = "batch", seed: int | None = None, title: str = "") -> Batch:
    """Queue a batch: ``items`` (each ``scenario_id`` or ``scenario`` text, ``mode``,
    ``seed``, ``title``), or one scenario (``scenario_id`` or ``text``) under each of
    ``variations``. One request and one active run for fair use."""
    batch_items: list[BatchItem] = []
    if variations is not None:
        stored = scenario_get(user=user, scenario_id=scenario_id) if scenario_id else None
        base = stored.body if stored else text
        for index, variation in enumerate(variations):
            body = scenario_varied(base, variation, field=f"variations[{index}]")
            data = {"source": "yaml", "scenario": body, "mode": mode}
            if seed is not None:
                data["seed"] = seed
            name = stored.name if stored else ""
            batch_items.append(BatchItem(data=data, title=f"{name or 'scenario'} "
                                                          f"[{variation_label(variation)}]"))
        parameters = {"kind": "variations", "variations": variations}
    else:
        for index, item in enumerate(items or []):
            data = {"mode": item.get("mode") or mode}
            if item.get("seed", seed) is not None:
                data["seed"] = item.get("seed", seed)
            stored = None
            if item.get("scenario_id") is not None:
                try:
                    stored = scenario_get(user=user, scenario_id=item["scenario_id"])
                except LabNotFound as missing:
                    raise LabInputError.one(f"items[{index}].scenario_id",
                                            str(missing)) from None
                data["source"] = "stored"
            else:
                data.update(source="yaml", scenario=item.get("scenario"))
            batch_items.append(BatchItem(data=data, stored=stored,
                                         title=item.get("title") or ""))
        parameters = {"kind": "scenarios"}
    return batch_submit(user=user, items=batch_items, title=title, parameters=parameters,
                        max_flows=settings.API_REQUEST_MAX_FLOWS)


def batch_visible(*, user, batch_id: int) -> Batch:
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None or not (batch.owner_id == user.pk or user_is_instructor(user)):
        raise LabNotFound("batch", f"no batch {batch_id}, or not yours")
    return batch


def batch_runs(batch: Batch) -> list[Run]:
    return list(batch.runs.defer("report", "scenario_body").order_by("pk"))


def batch_result(batch: Batch) -> dict[str, Any]:
    """Per-item progress, and once every item ended the aggregate: ``passed`` (every item
    succeeded and passed), items per verdict, flows per verdict."""
    runs = batch_runs(batch)
    items = []
    for index, run in enumerate(runs):
        verdict = run_verdict(run)
        items.append({"index": index, "run_id": run.pk, "title": run.title,
                      "status": run.status, "progress": run.progress, "error": run.error,
                      "passed": None if verdict is None else verdict["passed"],
                      "verdict": verdict})
    finished = all(run.is_finished for run in runs)
    result = None
    if finished:
        flows = {name: sum((i["verdict"] or {}).get("counts", {}).get(name, 0) for i in items)
                 for name in VERDICT_COUNTS}
        result = {
            "passed": bool(items) and all(i["status"] == "succeeded" and i["passed"]
                                          for i in items),
            "items_passed": sum(1 for i in items if i["passed"]),
            "items_failed": sum(1 for i in items if i["status"] == "succeeded"
                                and not i["passed"]),
            "items_in_error": sum(1 for i in items if i["status"] != "succeeded"),
            "flows": flows,
        }
    done = sum(1 for run in runs if run.is_finished)
    return {"id": batch.pk, "schema_version": RESULT_SCHEMA_VERSION, "title": batch.title,
            "kind": batch.parameters.get("kind", "scenarios"),
            "status": "finished" if finished else ("running" if any(
                run.status == Run.Status.RUNNING or run.is_finished for run in runs)
                else "queued"),
            "progress": (sum(run.progress if not run.is_finished else 1.0 for run in runs)
                         / len(runs)) if runs else 1.0,
            "items_total": len(runs), "items_finished": done, "created_at": batch.created_at,
            "items": items, "result": result}


# -------------------------------------------------------------------------------- JUnit


def _testcase(suite, *, classname: str, name: str, seconds: float | None):
    return ElementTree.SubElement(suite, "testcase", classname=classname, name=name,
                                  time=f"{seconds or 0:.3f}")


def _run_cases(suite, run: Run, *, classname: str) -> tuple[int, int, int]:
    """One test case per check of ``run`` (one for the whole run when it has no checks or
    did not succeed); returns (tests, failures, errors)."""
    seconds = _seconds(run.started_at, run.finished_at)
    report = run.report or {}
    if run.status != Run.Status.SUCCEEDED:
        case = _testcase(suite, classname=classname, name=run.title or f"run {run.pk}",
                         seconds=seconds)
        if run.is_finished:
            ElementTree.SubElement(case, "error", type=run.status,
                                   message=run.error or run.status).text = run.error
        else:
            ElementTree.SubElement(case, "skipped", message=f"run is {run.status}")
        return 1, 0, int(run.is_finished)
    checks = report.get("checks") or []
    if not checks:
        case = _testcase(suite, classname=classname, name="verdict", seconds=seconds)
        if not (run.summary or {}).get("passed"):
            ElementTree.SubElement(case, "failure", type="verdict",
                                   message=run.verdict).text = run.verdict
        return 1, int(not (run.summary or {}).get("passed")), 0
    failures = 0
    for check in checks:
        case = _testcase(suite, classname=classname,
                         name=f"{check['metric']} {check['op']} {check['expected']:g}",
                         seconds=seconds)
        if not check["passed"]:
            failures += 1
            ElementTree.SubElement(case, "failure", type="check", message=(
                f"{check['metric']}: expected {check['op']} {check['expected']:g}, got "
                f"{check['actual']}")).text = run.verdict
    return len(checks), failures, 0


def _suite(parent, name: str, runs: list[Run], classname_of) -> None:
    suite = ElementTree.SubElement(parent, "testsuite", name=name)
    totals = [0, 0, 0]
    for run in runs:
        for i, n in enumerate(_run_cases(suite, run, classname=classname_of(run))):
            totals[i] += n
    suite.set("tests", str(totals[0]))
    suite.set("failures", str(totals[1]))
    suite.set("errors", str(totals[2]))


def run_junit(run: Run) -> str:
    """JUnit XML of ``run``: one test case per check (CI servers read it)."""
    root = ElementTree.Element("testsuites", name="rsslab")
    _suite(root, f"run {run.pk}: {run.title}", [run],
           lambda r: f"rsslab.run{r.pk}.{slugify(r.title) or 'scenario'}")
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True)


def batch_junit(batch: Batch) -> str:
    """JUnit XML of ``batch``: one test suite, a test case per check of each item."""
    runs = list(Batch.objects.get(pk=batch.pk).runs.order_by("pk"))
    root = ElementTree.Element("testsuites", name="rsslab")
    _suite(root, f"batch {batch.pk}: {batch.title}".strip(": "), runs,
           lambda r: f"rsslab.batch{batch.pk}.item{runs.index(r)}."
                     f"{slugify(r.title) or 'scenario'}")
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True)


# -------------------------------------------------------------------------- idempotency


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: Any
    location: str


def request_fingerprint(method: str, path: str, data: Any) -> str:
    """A digest of what a request asks (its parsed fields; an uploaded file by its bytes'
    digest), so a retried multipart upload with a new boundary is still the same request."""
    def plain(value):
        if hasattr(value, "read") and hasattr(value, "seek"):
            value.seek(0)
            digest = hashlib.sha256(value.read()).hexdigest()
            value.seek(0)
            return {"file": digest}
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    if hasattr(data, "lists"):  # a QueryDict: every value of every field
        data = {key: values if len(values) != 1 else values[0] for key, values in data.lists()}
    text = json.dumps([method, path, plain(data)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def idempotency_begin(*, user, key: str, fingerprint: str) -> StoredResponse | None:
    """Claim ``key`` for this request, or return the response stored for it.

    ApiUnprocessable (422) when the key was used with another request; ApiConflict (409)
    while the first request with it is still being answered. Keys older than
    API_IDEMPOTENCY_SECONDS are forgotten.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.API_IDEMPOTENCY_SECONDS)
    IdempotencyRecord.objects.filter(user=user, created_at__lt=cutoff).delete()
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(user=user, key=key, request_hash=fingerprint)
        return None
    except IntegrityError:
        record = IdempotencyRecord.objects.filter(user=user, key=key).first()
    if record is None:  # removed in between (the first request failed): try once more
        return idempotency_begin(user=user, key=key, fingerprint=fingerprint)
    if record.request_hash != fingerprint:
        raise ApiUnprocessable("Idempotency-Key", f"key {key!r} was used with another "
                                                  f"request; use a new key for a new request",
                               code="idempotency_key_reused")
    if record.status is None:
        raise ApiConflict("Idempotency-Key", f"the first request with key {key!r} is still "
                                             f"being answered; retry in a moment",
                          code="idempotency_in_progress")
    return StoredResponse(record.status, record.body, record.location)


def idempotency_finish(*, user, key: str, status: int, body: Any, location: str) -> None:
    """Keep the response to the request that claimed ``key``; a response worth retrying
    (429, 5xx) releases the key instead, so the retry runs."""
    records = IdempotencyRecord.objects.filter(user=user, key=key, status__isnull=True)
    if status == 429 or status >= 500:
        records.delete()
    else:
        records.update(status=status, body=body, location=location)


def idempotency_release(*, user, key: str) -> None:
    IdempotencyRecord.objects.filter(user=user, key=key, status__isnull=True).delete()


# ------------------------------------------------------------------------------- health


def health() -> dict[str, str]:
    """``ok`` or the error for the database and Redis (the broker and channel layer)."""
    import redis
    from django.db import connection

    from labsite.redisurls import channels_redis_url

    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as error:  # any failure is the answer, not a crash
        checks["database"] = f"error: {type(error).__name__}"
    try:
        client = redis.Redis.from_url(channels_redis_url(settings.REDIS_URL),
                                      socket_connect_timeout=1.0, socket_timeout=1.0)
        try:
            client.ping()
        finally:
            client.close()
        checks["redis"] = "ok"
    except Exception as error:
        checks["redis"] = f"error: {type(error).__name__}"
    return checks

"""Read-side helpers for runs: access rules, listings, the run's JSON and its events."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q, QuerySet
from django.urls import reverse

from labsite.lab.selectors import user_is_instructor
from labsite.runs.models import Batch, Run, RunEventChunk


def run_visible_to(*, user, run: Run) -> bool:
    """The person who ran it, instructors and staff may watch a run."""
    if not user.is_authenticated:
        return False
    return run.ran_by_id == user.pk or user_is_instructor(user)


def run_deletable_by(*, user, run: Run) -> bool:
    """Who may delete a run: the person who ran it, instructors and staff (any run)."""
    return run_visible_to(user=user, run=run)


@dataclass(frozen=True)
class RunFilters:
    """The runs list's filters, read from its query string; anything unknown is ignored
    (a filter form never answers with an error page): ``who`` ``mine`` or ``all`` (only
    instructors see others' runs; their default is ``all``), ``mode`` one of the run
    modes, ``verdict`` ``passed`` / ``failed`` / ``none`` (no verdict: queued, running,
    failed to run), ``date`` the day a run was queued (YYYY-MM-DD, the server's zone)."""

    who: str = "mine"
    mode: str = ""
    verdict: str = ""
    date: datetime.date | None = None

    VERDICTS = ("passed", "failed", "none")

    @classmethod
    def from_query(cls, query, *, instructor: bool) -> RunFilters:
        who = query.get("who", "all" if instructor else "mine")
        if not instructor or who not in ("mine", "all"):
            who = "mine"
        mode = query.get("mode", "")
        verdict = query.get("verdict", "")
        try:
            date = datetime.date.fromisoformat(query.get("date", ""))
        except ValueError:
            date = None
        return cls(who=who, mode=mode if mode in Run.Mode.values else "",
                   verdict=verdict if verdict in cls.VERDICTS else "", date=date)

    def query(self) -> str:
        """The filters as a query string (for the pagination links)."""
        return urlencode({k: v for k, v in (("who", self.who), ("mode", self.mode),
                                             ("verdict", self.verdict),
                                             ("date", self.date.isoformat() if self.date
                                              else "")) if v})


def run_list(*, user, filters: RunFilters | None = None) -> QuerySet[Run]:
    """Runs a user may see, newest first (without their reports or scenario text),
    narrowed by ``filters`` (default: the user's own)."""
    filters = filters or RunFilters()
    runs = Run.objects.select_related("scenario", "ran_by").defer("report", "scenario_body")
    if filters.who != "all" or not user_is_instructor(user):
        runs = runs.filter(ran_by=user)
    if filters.mode:
        runs = runs.filter(mode=filters.mode)
    if filters.verdict == "passed":
        runs = runs.filter(summary__passed=True)
    elif filters.verdict == "failed":
        runs = runs.filter(summary__passed=False)
    elif filters.verdict == "none":
        runs = runs.filter(Q(summary__passed__isnull=True) | ~Q(summary__has_key="passed"))
    if filters.date is not None:
        runs = runs.filter(created_at__date=filters.date)
    return runs.order_by("-created_at", "-pk")


def batch_list(*, user) -> QuerySet[Batch]:
    """Batches a user may see, newest first: their own, every one for an instructor."""
    batches = Batch.objects.order_by("-created_at", "-pk")
    return batches if user_is_instructor(user) else batches.filter(owner=user)


def run_get_for_user(*, user, run_id: int) -> Run | None:
    """The run if it exists and ``user`` may see it, else None (the caller answers 404)."""
    run = Run.objects.select_related("scenario").filter(pk=run_id).first()
    if run is None or not run_visible_to(user=user, run=run):
        return None
    return run


def run_ws_url(run_id: int) -> str:
    """The path of the websocket that streams run ``run_id`` (``labsite.runs.routing``)."""
    return reverse("run-ws", urlconf="labsite.runs.routing", kwargs={"run_id": run_id})


def run_urls(run_id: int) -> dict[str, str]:
    """Where a client follows run ``run_id``: its websocket, status and events."""
    return {"ws": run_ws_url(run_id),
            "status_url": reverse("runs:api-run", kwargs={"run_id": run_id}),
            "events_url": reverse("runs:api-run-events", kwargs={"run_id": run_id})}


def run_payload(run: Run) -> dict[str, Any]:
    """A run as the lab API returns it (``report`` once it has one; ``pcap_note`` the
    line the verdict shows about a replayed capture, see :func:`report_pcap_note`;
    ``events_pruned_at`` when the retention job deleted its events, else null)."""
    return {"run": run.pk, "status": run.status, "progress": run.progress,
            "error": run.error, "mode": run.mode, "seed": run.seed, "title": run.title,
            "scenario_yaml": run.scenario_body, "report": run.report,
            "pcap_note": report_pcap_note(run.report),
            "event_count": run.event_count, "stored_bytes": run.stored_bytes,
            "events_pruned_at": run.events_pruned_at, **run_urls(run.pk)}


def report_pcap_note(report: Any) -> str | None:
    """The engine's one line on what a replayed capture gave (frames read, packets and
    flows used, what was skipped and why), from the report's ``pcap`` section, so a
    capture read only in part never passes unnoticed. None for a run without one."""
    from engine.scenarios.pcap import PcapTally

    pcap = report.get("pcap") if isinstance(report, dict) else None
    if not isinstance(pcap, dict):
        return None
    try:
        return PcapTally(**pcap).line()
    except TypeError:  # a report stored by another version of the engine
        return None


def run_events_page(run: Run, *, after: int = -1, limit: int) -> dict[str, Any]:
    """Stored events of ``run`` with ``seq > after``, in order, at most ``limit``.

    ``next_after`` is the last returned seq (null when none was returned); ``complete``
    says the run has finished and nothing is stored beyond the returned events. The
    run's status is read before the events: every event of a finished run was stored
    before it finished, so ``complete`` is never true while events are still missing.
    """
    finished = Run.objects.filter(pk=run.pk, status__in=Run.FINISHED).exists()
    events: list[dict] = []
    chunks = (RunEventChunk.objects.filter(run=run, last_seq__gt=after)
              .order_by("first_seq").values_list("events", flat=True))
    more = False
    for chunk in chunks.iterator(chunk_size=8):
        for event in chunk:
            if event["seq"] <= after:
                continue
            if len(events) >= limit:
                more = True
                break
            events.append(event)
        if more:
            break
    return {"events": events, "next_after": events[-1]["seq"] if events else None,
            "complete": finished and not more}

"""Exercise pages and JSON endpoints. Thin: selectors read, services write, and a GET
only reads (a student's variant is created by the POST of "Start", not by viewing).

Students: the list (``/exercises/``), an exercise (``/exercises/<slug>/``: their variant,
the answer form, feedback, attempts), start, reveal a hint (a confirmation page first,
then a POST), and the JSON endpoints the page's script calls — submit, an attempt's
status, the variant's scenario for the lab. Instructors: manage (upload with lint,
publish, preview any seed, gradebook and its CSV, one student's attempts, reset a
variant, regrade, roster, password reset). A student asking for anything that is not
theirs gets a 404, the same as for something that does not exist.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from labsite.exercises import selectors, services
from labsite.exercises.models import Exercise
from labsite.lab.api import api_view
from labsite.lab.errors import LabInputError, LabNotFound
from labsite.lab.selectors import user_is_instructor


def instructor_required(view):
    """Log-in required; a non-instructor gets a 404 (the page does not exist for them)."""
    @login_required
    def wrapper(request, *args, **kwargs):
        if not user_is_instructor(request.user):
            raise Http404("no such page")
        return view(request, *args, **kwargs)
    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


# ---------------------------------------------------------------------------- students

@login_required
@require_GET
def index(request):
    return render(request, "exercises/list.html", {
        "rows": selectors.student_exercise_rows(request.user),
        "is_instructor": user_is_instructor(request.user)})


@login_required
@require_GET
def detail(request, slug):
    """The student's own variant (or a Start button before their first view)."""
    exercise = selectors.exercise_get_for_user(request.user, slug)
    variant = selectors.live_variant(exercise, request.user)
    context = {"exercise": exercise, "variant": variant,
               "now": timezone.now(), "is_instructor": user_is_instructor(request.user)}
    if variant is not None:
        history = selectors.attempt_history(variant)
        context.update(selectors.variant_page(exercise, variant.seed, variant=variant))
        context.update(history=history, score=selectors.variant_score(variant),
                       # A fresh token per page: submitting this form twice counts once.
                       token=secrets.token_urlsafe(24),
                       last=selectors.attempt_payload(history[0]) if history else None)
    return render(request, "exercises/detail.html", context)


@login_required
@require_POST
def start(request, slug):
    exercise = selectors.exercise_get_for_user(request.user, slug)
    services.variant_start(exercise, request.user)
    return redirect("exercises:detail", slug=slug)


@login_required
@require_http_methods(["GET", "POST"])
def hint(request, slug, question, index):
    """GET: what the hint costs, and a button; POST: reveal it."""
    exercise = selectors.exercise_get_for_user(request.user, slug)
    variant = selectors.live_variant(exercise, request.user)
    if variant is None:
        return redirect("exercises:detail", slug=slug)
    page = selectors.variant_page(exercise, variant.seed, variant=variant)
    found = next((q for q in page["questions"] if q["id"] == question), None)
    if found is None or not 0 <= index < len(found["hints"]):
        raise Http404("no such hint")
    if request.method == "POST":
        try:
            services.hint_reveal(variant, question, index)
        except LabInputError as error:
            messages.error(request, str(error))
        return redirect(reverse("exercises:detail", args=[slug]) + f"#q-{question}")
    return render(request, "exercises/hint.html", {
        "exercise": exercise, "question": found, "hint": found["hints"][index]})


@api_view("POST")
def api_submit(request, slug):
    exercise = selectors.exercise_get_for_user(request.user, slug)
    attempt = services.attempt_submit(user=request.user, exercise=exercise,
                                      data=request.POST, token=request.POST.get("token", ""))
    return JsonResponse({**selectors.attempt_payload(attempt),
                         "status_url": reverse("exercises:api-attempt",
                                               args=[slug, attempt.pk])}, status=201)


@api_view("GET")
def api_attempt(request, slug, attempt_id):
    exercise = selectors.exercise_get_for_user(request.user, slug)
    attempt = selectors.attempt_get_for_user(request.user, exercise, attempt_id)
    payload = selectors.attempt_payload(attempt)
    payload["total"] = selectors.variant_score(attempt.variant)
    return JsonResponse(payload)


@api_view("GET")
def api_scenario(request, slug):
    """The variant's scenario file for the lab's YAML tab: the student's own; an
    instructor may ask for any ``?seed=``."""
    exercise = selectors.exercise_get_for_user(request.user, slug)
    seed = request.GET.get("seed")
    if seed is not None and user_is_instructor(request.user):
        seed = _seed(seed)
    else:
        variant = selectors.live_variant(exercise, request.user)
        if variant is None:
            raise LabInputError.one("exercise", "start the exercise first")
        seed = variant.seed
    return JsonResponse({"exercise": exercise.slug, "title": exercise.title,
                         "yaml": selectors.variant_scenario_yaml(exercise, seed)})


def _seed(text) -> int:
    try:
        seed = int(str(text).strip())
    except ValueError:
        seed = -1
    if not 0 <= seed <= 2 ** 63 - 1:
        raise LabInputError.one("seed", f"expected a whole number 0-{2 ** 63 - 1}")
    return seed


# ---------------------------------------------------------------------------- instructors

@instructor_required
@require_GET
def manage(request):
    return render(request, "exercises/manage.html", {
        "exercises": Exercise.objects.order_by("slug").prefetch_related("groups",
                                                                          "versions")})


@instructor_required
@require_http_methods(["GET", "POST"])
def upload(request):
    """Upload a file or type the text; the engine's lint is shown, each problem at its
    line, and nothing is stored until it is clean."""
    text, outcome = "", None
    if request.method == "POST":
        file = request.FILES.get("file")
        text = (file.read(services_limit() + 1) if file else
                request.POST.get("text", "").replace("\r\n", "\n"))
        outcome = services.exercise_upload(user=request.user, text=text)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if not outcome.problems:
            what = (f"version {outcome.version.number}" if outcome.version
                    else "unchanged (same text as the newest version)")
            messages.success(request, f"{outcome.exercise.title}: {what}; lint clean, "
                                      f"{outcome.variants:,} variants.")
            return redirect("exercises:publish", slug=outcome.exercise.slug)
    lines = text.split("\n") if text else []
    problem_lines = {p["line"] for p in (outcome.problems if outcome else []) if p["line"]}
    return render(request, "exercises/upload.html", {
        "text": text, "outcome": outcome,
        "numbered": [(n, line, n in problem_lines) for n, line in enumerate(lines, 1)]})


def services_limit() -> int:
    from django.conf import settings

    return settings.EXERCISE_UPLOAD_MAX_BYTES


@instructor_required
@require_http_methods(["GET", "POST"])
def publish(request, slug):
    exercise = selectors.exercise_get_for_instructor(request.user, slug)
    groups = Group.objects.exclude(name="instructor").order_by("name")
    if request.method == "POST":
        try:
            due = request.POST.get("due_at", "").strip()
            due_at = timezone.make_aware(datetime.fromisoformat(due)) if due else None
        except ValueError:
            messages.error(request, "due date: expected YYYY-MM-DDTHH:MM")
            return redirect("exercises:publish", slug=slug)
        try:
            penalty = int(request.POST.get("late_penalty_pct") or 0)
            services.exercise_publish(
                exercise, published=request.POST.get("published") == "on", due_at=due_at,
                late_policy=request.POST.get("late_policy", "accept"),
                late_penalty_pct=penalty,
                groups=groups.filter(pk__in=request.POST.getlist("groups")))
        except (LabInputError, ValueError) as error:
            messages.error(request, str(error))
            return redirect("exercises:publish", slug=slug)
        messages.success(request, f"{exercise.title}: "
                                  f"{'published' if exercise.published else 'not published'}.")
        return redirect("exercises:manage")
    return render(request, "exercises/publish.html", {
        "exercise": exercise, "groups": groups, "chosen": set(exercise.groups.values_list(
            "pk", flat=True)), "policies": Exercise.LatePolicy.choices,
        "versions": exercise.versions.order_by("-number")})


@instructor_required
@require_GET
def preview(request, slug):
    """Any variant exactly as its student sees it (``?seed=``, default 0)."""
    exercise = selectors.exercise_get_for_instructor(request.user, slug)
    try:
        seed = _seed(request.GET.get("seed", "0") or "0")
    except LabInputError as error:
        raise Http404(str(error)) from None
    context = {"exercise": exercise, "variant": None, "is_instructor": True,
               "now": timezone.now(), "history": []}
    context.update(selectors.variant_page(exercise, seed, preview=True))
    return render(request, "exercises/detail.html", context)


@instructor_required
@require_GET
def gradebook(request, slug):
    exercise = selectors.exercise_get_for_instructor(request.user, slug)
    book = selectors.gradebook(exercise)
    return render(request, "exercises/gradebook.html", {
        "exercise": exercise, "book": book,
        "chart": {"scores": book["scores"], "max_score": book["max_score"]}})


@instructor_required
@require_GET
def gradebook_csv(request, slug):
    exercise = selectors.exercise_get_for_instructor(request.user, slug)
    response = HttpResponse(selectors.gradebook_csv(exercise), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{exercise.slug}-gradebook.csv"'
    return response


def _student(user_id):
    return get_object_or_404(get_user_model(), pk=user_id)


@instructor_required
@require_GET
def student(request, slug, user_id):
    exercise = selectors.exercise_get_for_instructor(request.user, slug)
    person = _student(user_id)
    data = selectors.student_attempts(exercise, person)
    return render(request, "exercises/student.html", {
        "exercise": exercise, "person": person, **data})


@instructor_required
@require_POST
def reset(request, slug, user_id):
    exercise = selectors.exercise_get_for_instructor(request.user, slug)
    person = _student(user_id)
    marked = services.variant_reset(exercise, person)
    messages.success(request, f"{person.username}: variant reset, {marked} attempts kept and "
                              f"marked; a new variant starts at their next view.")
    return redirect("exercises:student", slug=slug, user_id=user_id)


@instructor_required
@require_POST
def regrade(request, slug):
    exercise = selectors.exercise_get_for_instructor(request.user, slug)
    services.exercise_regrade_queue(exercise)
    messages.success(request, f"Regrading every attempt of {exercise.title} on version "
                              f"{selectors.newest_version(exercise).number} on a worker; "
                              f"reload the gradebook in a moment.")
    return redirect("exercises:gradebook", slug=slug)


@instructor_required
@require_http_methods(["GET", "POST"])
def roster(request):
    """Add students from a CSV roster; new passwords are shown on this response only."""
    created, text = None, ""
    if request.method == "POST":
        file = request.FILES.get("file")
        text = (file.read(1_000_000).decode("utf-8", "replace") if file
                else request.POST.get("text", ""))
        try:
            created = services.roster_import(text)
        except LabInputError as error:
            messages.error(request, str(error))
    return render(request, "exercises/roster.html", {"created": created, "text": text})


@instructor_required
@require_POST
def password_reset(request, user_id):
    person = _student(user_id)
    try:
        password = services.student_password_reset(person)
    except LabInputError as error:
        raise LabNotFound("student", str(error)) from None
    return render(request, "exercises/password.html", {"person": person,
                                                        "password": password})

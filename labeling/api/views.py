"""The JSON API: token auth (session auth with CSRF for the browser). Each view parses its
input, calls one service or selector, and answers; LabelingError -> {"error": message} with
the error's status. Staff-only: import, export, snapshots, pushing tasks, agreement."""
import functools

from django.contrib.auth.decorators import login_not_required
from django.http import StreamingHttpResponse
from rest_framework import status
from rest_framework.decorators import api_view, parser_classes, permission_classes
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response

from labeling import agreement, exports, selectors
from labeling.api import serializers as s
from labeling.api.parsers import BoundedJSONParser
from labeling.errors import ImportFailed, Invalid, LabelingError
from labeling.importers import MAX_BYTES, prompts_import
from labeling.models import Project
from labeling.parsing import as_of_moment
from labeling.services import demonstrations, queue, ranking_tasks, rankings
from labeling.services.exports import export_snapshot_create


def endpoint(methods, *, staff=False):
    """api_view + permission + LabelingError mapping + exempt from LoginRequiredMiddleware
    (DRF authenticates API requests by token or session itself)."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(request, *args, **kwargs):
            try:
                return fn(request, *args, **kwargs)
            except ImportFailed as exc:
                lines = [{"line": n, "message": m} for n, m in exc.errors]
                return Response({"error": exc.message, "lines": lines}, status=exc.status)
            except LabelingError as exc:
                return Response({"error": exc.message}, status=exc.status)

        view = permission_classes([IsAdminUser if staff else IsAuthenticated])(inner)
        return login_not_required(api_view(methods)(view))

    return wrap


def parse(serializer_class, data):
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise Invalid(_first_error(serializer.errors))
    return serializer.validated_data


def _first_error(errors) -> str:
    if isinstance(errors, dict):
        field, value = next(iter(errors.items()))
        prefix = "" if field == "non_field_errors" else f"{field}: "
        return prefix + _first_error(value)
    if isinstance(errors, list) and errors:
        return _first_error(errors[0] if not isinstance(errors[0], dict) else errors[0])
    return str(errors)


def _project(slug: str | None) -> Project | None:
    return selectors.project_by_slug(slug=slug) if slug else None


@endpoint(["GET"])
def project_list(request):
    projects = Project.objects.filter(is_active=True)
    return Response({"projects": s.ProjectSerializer(projects, many=True).data})


@endpoint(["POST"])
def task_next(request):
    data = parse(s.NextTaskIn, request.data)
    claim = {"ranking": queue.ranking_claim_next, "comparison": queue.comparison_claim_next,
             "demonstration": queue.demonstration_claim_next}[data["kind"]]
    assignment = claim(labeler=request.user, project=_project(data.get("project")))
    if assignment is None:
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(s.AssignmentSerializer(assignment).data)


@endpoint(["GET"])
def assignment_detail(request, assignment_id):
    assignment = selectors.assignment_for(assignment_id=assignment_id, labeler=request.user)
    return Response(s.AssignmentSerializer(assignment).data)


@endpoint(["POST"])
def ranking_submit(request, assignment_id):
    data = parse(s.RankingIn, request.data)
    ranking = rankings.ranking_submit(assignment_id=assignment_id, labeler=request.user, **data)
    return Response(s.RankingSerializer(ranking).data, status=status.HTTP_201_CREATED)


@endpoint(["POST"])
def demonstration_submit(request, assignment_id):
    data = parse(s.DemonstrationIn, request.data)
    demo = demonstrations.demonstration_submit(
        assignment_id=assignment_id, labeler=request.user, **data
    )
    return Response(s.DemonstrationSerializer(demo).data, status=status.HTTP_201_CREATED)


@endpoint(["POST"])
def dialogue_create(request):
    data = parse(s.DialogueIn, request.data)
    project = selectors.project_by_slug(slug=data.pop("project"))
    demo = demonstrations.dialogue_create(project=project, labeler=request.user, **data)
    return Response(s.DemonstrationSerializer(demo).data, status=status.HTTP_201_CREATED)


@endpoint(["POST"])
def assignment_renew(request, assignment_id):
    assignment = queue.assignment_renew(assignment_id=assignment_id, labeler=request.user)
    return Response({"id": assignment.pk, "expires_at": assignment.expires_at})


@endpoint(["POST"])
def assignment_skip(request, assignment_id):
    data = parse(s.SkipIn, request.data)
    skip = queue.assignment_skip(assignment_id=assignment_id, labeler=request.user, **data)
    return Response(s.SkipSerializer(skip).data)


@endpoint(["POST"], staff=True)
@parser_classes([MultiPartParser, FormParser, BoundedJSONParser])
def project_import(request, slug):
    data = parse(s.ImportIn, request.data)
    content = data["file"].read(MAX_BYTES + 1) if "file" in data else data["content"]
    report = prompts_import(
        project=selectors.project_by_slug(slug=slug), content=content, format=data["format"],
        author=request.user, demonstrations_needed=data["demonstrations_needed"],
        evaluation_share=data["evaluation_share"],
    )
    return Response(vars(report), status=status.HTTP_201_CREATED)


def _as_of(request, project):
    if snapshot_id := request.query_params.get("snapshot"):
        named, as_of = exports.snapshot_resolve(snapshot_id)
        if named != project:
            raise Invalid("That snapshot belongs to another project.")
        return as_of
    if raw := request.query_params.get("as_of"):
        return as_of_moment(raw)
    return None


@endpoint(["GET"], staff=True)
def project_export(request, slug):
    """JSONL, one record a line; the X-Snapshot-Id header names the data for a later re-read."""
    project = selectors.project_by_slug(slug=slug)
    kind = request.query_params.get("kind", "comparisons")
    snap = exports.snapshot_for(project=project, as_of=_as_of(request, project))
    lines = exports.jsonl_lines(exports.records(kind, project=project, as_of=snap.as_of))
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson; charset=utf-8")
    response["X-Snapshot-Id"] = snap.id
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-{kind}.jsonl"'
    return response


@endpoint(["POST"], staff=True)
def project_snapshot(request, slug):
    project = selectors.project_by_slug(slug=slug)
    snapshot = export_snapshot_create(
        project=project, as_of=_as_of(request, project), created_by=request.user
    )
    return Response(s.SnapshotSerializer(snapshot).data, status=status.HTTP_201_CREATED)


@endpoint(["POST"], staff=True)
def project_ranking_tasks(request, slug):
    data = parse(s.RankingTasksIn, request.data)
    created = ranking_tasks.ranking_tasks_create(
        project=selectors.project_by_slug(slug=slug),
        prompt_completions=[(t["prompt_id"], t["completions"]) for t in data["tasks"]],
        batch_key=data["batch_key"], priority=data["priority"],
    )
    return Response({"task_ids": [t.pk for t in created]}, status=status.HTTP_201_CREATED)


@endpoint(["GET"], staff=True)
def project_agreement(request, slug):
    project = selectors.project_by_slug(slug=slug)
    report = agreement.project_agreement(project=project, as_of=_as_of(request, project))
    return Response(report.as_dict())

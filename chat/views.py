"""The chat pages: a labeler's conversations with the live model, and staff's comparison
buttons. Plain forms that redirect; `static/chat/chat.js` streams replies into the page (server-
sent events) and the page works without it, showing replies on reload. A refused action shows
the conversation again with the message and what was typed, so nothing is lost."""

import json
from functools import wraps

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from chat import selectors
from chat.models import ArenaBattle, Message
from chat.services.arena import arena_get, arena_start, arena_vote
from chat.services.comparisons import chat_comparisons_create
from chat.services.conversations import (
    conversation_start,
    conversation_switch,
    message_edit,
    message_regenerate,
    message_send,
    suggestion_request,
)
from chat.streaming import events_response
from labeling.errors import Invalid, LabelingError, NotFound
from labeling.models import Project, Vote
from training.errors import TrainingError
from training.models import Generation, ModelVersion
from training.services.generations import generation_resubmit

ERRORS = (LabelingError, TrainingError)


def chat_errors(view):
    """A service's refusal is a 4xx page with its message, never a 500."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except ERRORS as exc:
            context = {"message": exc.message, "back_url": reverse("chat:index"),
                       "back_label": "Back to your chats"}  # fmt: skip
            return render(request, "labeling/error.html", context, status=exc.status)

    return wrapper


@require_GET
def index(request):
    return _index_page(request)


def _index_page(request, error=None, draft="", status=200):
    offers = selectors.chat_offers()
    conversations = selectors.conversations_visible(request.user)[:200]
    return render(request, "chat/index.html", {
        "offers": offers, "conversations": conversations, "error": error, "draft": draft,
    }, status=status)  # fmt: skip


@require_POST
def start(request):
    text = request.POST.get("text", "")
    try:
        slug = request.POST.get("project", "")
        project = Project.objects.filter(slug=slug, is_active=True).first()
        version = ModelVersion.objects.filter(pk=_int(request.POST.get("model_version"))).first()
        if project is None or version is None:
            raise Invalid("Choose a project and a model to talk to.")
        conversation = conversation_start(labeler=request.user, project=project,
                                          model_version=version, text=text)  # fmt: skip
    except ERRORS as exc:
        return _index_page(request, error=exc.message, draft=text, status=exc.status)
    return redirect("chat:conversation", conversation.pk)


@require_GET
@chat_errors
def conversation(request, pk):
    return _conversation_page(request, selectors.conversation_get(request.user, pk))


def _conversation_page(request, conversation, error=None, draft="", status=200):
    shown = selectors.conversation_branch(conversation)
    own = conversation.labeler_id == request.user.pk
    return render(request, "chat/conversation.html", {
        "conversation": conversation, "shown": shown, "own": own, "error": error, "draft": draft,
        "waiting": bool(shown) and shown[-1].message.role == Message.Role.ASSISTANT
        and shown[-1].message.generation.status not in Generation.FINISHED,
    }, status=status)  # fmt: skip


def _own_conversation(request, pk):
    conversation = selectors.conversation_get(request.user, pk)
    if conversation.labeler_id != request.user.pk:  # staff read others' chats, never write
        raise NotFound("There is no such conversation among yours.")
    return conversation


def _message(conversation, message_id) -> Message:
    message = Message.objects.filter(conversation=conversation, pk=message_id).first()
    if message is None:
        raise NotFound("There is no such message in this conversation.")
    return message


@require_POST
@chat_errors
def send(request, pk):
    conv = _own_conversation(request, pk)
    text = request.POST.get("text", "")
    try:
        message_send(conversation=conv, text=text)
    except ERRORS as exc:
        return _conversation_page(request, conv, error=exc.message, draft=text,
                                  status=exc.status)
    return redirect("chat:conversation", conv.pk)


@require_POST
@chat_errors
def edit(request, pk, message_id):
    conv = _own_conversation(request, pk)
    message_edit(conversation=conv, message=_message(conv, message_id),
                 text=request.POST.get("text", ""))  # fmt: skip
    return redirect("chat:conversation", conv.pk)


@require_POST
@chat_errors
def regenerate(request, pk, message_id):
    conv = _own_conversation(request, pk)
    message_regenerate(conversation=conv, message=_message(conv, message_id))
    return redirect("chat:conversation", conv.pk)


@require_POST
@chat_errors
def show(request, pk, message_id):
    conv = _own_conversation(request, pk)
    conversation_switch(conversation=conv, message=_message(conv, message_id))
    return redirect("chat:conversation", conv.pk)


def _generation(request, key) -> Generation:
    rows = Generation.objects.filter(key=key)
    if not request.user.is_staff:
        rows = rows.filter(requested_by=request.user)
    generation = rows.first()
    if generation is None:
        raise NotFound("There is no such reply among yours.")
    return generation


@require_GET
@chat_errors
def events(request, key):
    return events_response(_generation(request, key), request.headers.get("Last-Event-ID", "0"))


@require_POST
@chat_errors
def retry(request, key):
    generation_resubmit(_generation(request, key))
    return redirect(request.POST.get("back") if _local(request.POST.get("back")) else "chat:index")


@require_POST
@staff_member_required
@chat_errors
def compare(request, pk, message_id):
    conv = selectors.conversation_get(request.user, pk)
    chat_comparisons_create(project=conv.project, requested_by=request.user,
                            messages=[_message(conv, message_id)])  # fmt: skip
    project = conv.project
    messages.success(request, f"Alternatives are being written: a ranking task of {project.k} "
                              f"replies follows in {project.name}.")  # fmt: skip
    return redirect("chat:conversation", conv.pk)


@require_POST
@staff_member_required
@chat_errors
def compare_random(request):
    project = Project.objects.filter(slug=request.POST.get("project", "")).first()
    if project is None:
        raise Invalid("Choose a project.")
    versions = list(ModelVersion.objects.filter(pk__in=[
        _int(v) for v in request.POST.getlist("model_versions")]))  # fmt: skip
    made = chat_comparisons_create(project=project, requested_by=request.user,
                                   count=_int(request.POST.get("count"), default=0),
                                   model_versions=versions or None)  # fmt: skip
    messages.success(request, f"{len(made)} chat messages chosen at random: their alternatives "
                              "are being written, then they become ranking tasks.")  # fmt: skip
    return redirect(reverse("chat:index"))


@require_POST
def suggest(request, project_slug):
    """JSON for the dialogue page's "Suggest" button: where to stream the suggestion from."""
    try:
        project = Project.objects.filter(slug=project_slug, is_active=True).first()
        if project is None:
            raise NotFound("There is no such project.")
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, RecursionError):
            raise Invalid("The request body must be JSON.") from None
        if not isinstance(body, dict):
            raise Invalid("The request body must be a JSON object.")
        seed = body.get("seed", 0)
        generation = suggestion_request(labeler=request.user, project=project,
                                        turns=body.get("turns"),
                                        seed=seed if isinstance(seed, int) else 0)  # fmt: skip
    except ERRORS as exc:
        return JsonResponse({"error": exc.message}, status=exc.status)
    return JsonResponse({"key": str(generation.key), "model": generation.model_version.name,
                         "events_url": reverse("chat:events", args=[generation.key])},
                        status=202)  # fmt: skip


@require_GET
def arena(request):
    return _arena_page(request)


def _arena_page(request, error=None, draft="", status=200):
    offers = [(p, models) for p, models in selectors.chat_offers() if len(models) >= 2]
    battles = ArenaBattle.objects.filter(labeler=request.user).select_related(
        "vote", "reply_a__model_version", "reply_b__model_version")[:50]  # fmt: skip
    context = {"offers": offers, "battles": battles, "error": error, "draft": draft}
    return render(request, "chat/arena.html", context, status=status)


@require_POST
def arena_start_view(request):
    text = request.POST.get("text", "")
    try:
        project = Project.objects.filter(slug=request.POST.get("project", ""),
                                         is_active=True).first()  # fmt: skip
        if project is None:
            raise Invalid("Choose a project.")
        battle = arena_start(labeler=request.user, project=project, text=text)
    except ERRORS as exc:
        return _arena_page(request, error=exc.message, draft=text, status=exc.status)
    return redirect("chat:arena-battle", battle.pk)


@require_GET
@chat_errors
def arena_battle(request, pk):
    battle = arena_get(labeler=request.user, pk=pk)
    replies = [("A", battle.reply_a), ("B", battle.reply_b)]
    return render(request, "chat/arena_battle.html", {
        "battle": battle, "replies": replies, "outcomes": Vote.Outcome.choices,
        "ready": all(g.status == Generation.Status.DONE for _, g in replies),
    })  # fmt: skip


@require_POST
@chat_errors
def arena_vote_view(request, pk):
    arena_vote(labeler=request.user, pk=pk, outcome=request.POST.get("outcome", ""))
    return redirect("chat:arena-battle", pk)


def _int(value, default=None):
    """A form's id or count, or `default` for anything that is not a plain small number."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
        return int(value)
    return default


def _local(url) -> bool:
    return isinstance(url, str) and url.startswith("/") and not url.startswith("//")

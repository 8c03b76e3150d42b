"""Writing demonstrations: a reply to a prompt, or a whole dialogue played both sides."""
import uuid

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from labeling.edits import edit_distance, turns_text
from labeling.errors import Conflict, Forbidden, Invalid, NotFound
from labeling.models import Assignment, Completion, Demonstration, Project, Prompt
from labeling.parsing import whole_number
from labeling.services.queue import lock_own_assignment
from labeling.services.rankings import clean_time_spent
from labeling.validation import (
    MAX_TOKEN_CHARS,
    clean_text,
    clean_turns,
    content_hash,
    render_turns,
)


def _clean_token(client_token) -> str:
    token = clean_text(client_token, field="The client token", max_chars=MAX_TOKEN_CHARS)
    return token.strip()


def _lock_labeler(labeler) -> None:
    """Serialize one person's submits (lock order as in the queue: user, then assignment), so a
    double-clicked submit waits for the first one and then finds what it stored."""
    if labeler is None or not labeler.is_authenticated or not labeler.is_active:
        raise Forbidden("Log in to label.")
    get_user_model().objects.select_for_update().filter(pk=labeler.pk).first()


def _replayed(*, client_token: str, labeler, assignment=None, turns=None) -> Demonstration | None:
    """The demonstration an earlier request with this token stored for the same task (the
    same assignment, or the same dialogue), if any. A token already used for another task or
    other words is a Conflict: answering with the earlier row would tell the client that what
    it sent now was saved."""
    existing = Demonstration.objects.filter(client_token=client_token).first()
    if existing is None:
        return None
    if existing.author_id != labeler.pk:
        raise Conflict("This form was already submitted by someone else; reload the page.")
    same_task = existing.assignment_id == getattr(assignment, "pk", None)
    if not same_task or (turns is not None and existing.turns != turns):
        raise Conflict("This form was already used for another submission; reload the page "
                       "to start a new one (copy your text first).")
    return existing


def _submitted_reply(assignment, reply: str) -> Demonstration:
    """The demonstration already stored for this assignment, if this is the same reply again."""
    demonstration = assignment.demonstration
    if demonstration.turns[-1]["content"] != reply:
        raise Conflict("You already submitted a different reply for this prompt; "
                       "a demonstration cannot be changed.")
    return demonstration


@transaction.atomic
def demonstration_submit(
    *, assignment_id, labeler, reply: str, client_token: str, time_spent_ms: int = 0
) -> Demonstration:
    """The ideal assistant reply to the leased prompt. Idempotent per assignment: the same reply
    again returns the stored demonstration; another reply, or the token of another submission,
    is a Conflict."""
    client_token = _clean_token(client_token)
    _lock_labeler(labeler)
    assignment = lock_own_assignment(assignment_id=assignment_id, labeler=labeler)
    if assignment.kind != Assignment.Kind.DEMONSTRATION:
        raise Invalid("This task asks for a ranking, not a demonstration.")
    reply = clean_text(reply, field="The reply").strip()
    if assignment.status == Assignment.Status.SUBMITTED:
        return _submitted_reply(assignment, reply)
    _replayed(client_token=client_token, labeler=labeler, assignment=assignment)  # or Conflict
    if assignment.status == Assignment.Status.SKIPPED:
        raise Conflict("You skipped this prompt.")
    prompt = Prompt.objects.select_for_update().get(pk=assignment.prompt_id)
    # Liveness and the slot are checked only now, holding the prompt's lock: a submit delayed
    # before this lock may find its lease expired and the slot claimed (and filled) by another.
    if not assignment.is_live():
        raise Conflict("Your time on this prompt ran out; take the next one.")
    if prompt.demonstrations_count >= prompt.demonstrations_needed:
        raise Conflict("This prompt already has all the demonstrations it needs; "
                       "take the next one.")
    turns = [*prompt.turns, {"role": "assistant", "content": reply}]
    demonstration = _create(
        prompt=prompt, labeler=labeler, turns=turns, client_token=client_token,
        assignment=assignment, time_spent_ms=time_spent_ms,
    )
    assignment.status = Assignment.Status.SUBMITTED
    assignment.save(update_fields=["status"])
    return demonstration


@transaction.atomic
def dialogue_create(
    *,
    project: Project,
    labeler,
    turns: list[dict],
    client_token: str,
    suggestion_id: int | None = None,
    time_spent_ms: int = 0,
    live_suggestions: dict | None = None,
) -> Demonstration:
    """A whole dialogue written by one person playing both sides; its prompt (every turn but the
    last reply) is created with it. Idempotent by `client_token` (the same turns again; other
    turns under a used token are a Conflict)."""
    client_token = _clean_token(client_token)
    _lock_labeler(labeler)
    turns = clean_turns(turns, ends_with="assistant")
    if existing := _replayed(client_token=client_token, labeler=labeler, turns=turns):
        return existing
    if not project.is_active:
        raise Conflict(f"The project {project.name} is closed.")
    if len(turns) < 2:
        raise Invalid("A dialogue has at least a user turn and an assistant reply.")
    suggestion = None
    if suggestion_id is not None:
        suggestion = (
            Completion.objects.filter(pk=suggestion_id, prompt__project=project)
            .select_related("prompt").first()
        )
        if suggestion is None:
            raise NotFound("The suggestion is not a completion of this project.")
    live, live_distance = _live_suggestions(labeler, turns, live_suggestions or {})
    prompt = prompt_create(
        project=project, turns=turns[:-1], source=Prompt.Source.LABELER, author=labeler
    )
    demonstration = _create(
        prompt=prompt, labeler=labeler, turns=turns, client_token=client_token,
        is_dialogue=True, suggestion=suggestion, time_spent_ms=time_spent_ms,
        extra_distance=live_distance,
    )
    demonstration.live_suggestions.set(live)
    return demonstration


def _live_suggestions(labeler, turns: list[dict], by_turn) -> tuple[list, int | None]:
    """The live suggestions taken into assistant turns ({turn number: generation key}), and the
    characters changed from them in total (None when there were none)."""
    if not isinstance(by_turn, dict) or len(by_turn) > len(turns):
        raise Invalid("Live suggestions map turn numbers to suggestion keys.")
    Generation = Demonstration.live_suggestions.field.related_model
    taken, distance = [], 0
    for number, key in by_turn.items():
        index = (whole_number(number, minimum=1, maximum=len(turns)) or 0) - 1
        if index < 0 or turns[index]["role"] != "assistant":
            raise Invalid(f"{str(number)[:20]!r} is not an assistant turn of this dialogue.")
        generation = Generation.objects.filter(
            key=key if _is_uuid(key) else None, requested_by=labeler, status="done"
        ).first()  # fmt: skip
        if generation is None:
            raise NotFound("A live suggestion is not one the model wrote for you.")
        taken.append(generation)
        distance += edit_distance(_newlines(generation.text), _newlines(turns[index]["content"]))
    return taken, (distance if taken else None)


def _newlines(text: str) -> str:
    """A browser's text box turns every line break into CRLF: that is not an edit."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def prompt_create(
    *, project: Project, turns: list[dict], source: str, author=None, demonstrations_needed=1
) -> Prompt:
    """A prompt; one whose normalized text is already in the project is flagged a duplicate."""
    turns = clean_turns(turns, ends_with="user")
    digest = content_hash(turns)
    original = (
        Prompt.objects.filter(project=project, content_hash=digest, duplicate_of__isnull=True)
        .order_by("id")
        .first()
    )
    prompt = Prompt(
        project=project, turns=turns, text=render_turns(turns), content_hash=digest,
        duplicate_of=original, source=source, author=author,
        demonstrations_needed=demonstrations_needed,
    )
    prompt.full_clean()
    prompt.save()
    return prompt


def suggestion_edit_distance(suggestion: Completion, turns: list[dict]) -> int:
    """Characters changed between the suggestion as it was offered (its prompt's turns and its
    reply, the dialogue the page started with) and the turns saved."""
    offered = [*suggestion.prompt.turns, {"role": "assistant", "content": suggestion.text}]
    return edit_distance(turns_text(offered), turns_text(turns))


def _create(*, prompt, labeler, turns, client_token, time_spent_ms, assignment=None,
            is_dialogue=False, suggestion=None, extra_distance=None) -> Demonstration:
    distance = None if suggestion is None else suggestion_edit_distance(suggestion, turns)
    if extra_distance is not None:
        distance = (distance or 0) + extra_distance
    demonstration = Demonstration(
        prompt=prompt, author=labeler, turns=turns, is_dialogue=is_dialogue,
        suggestion=suggestion, edit_distance=distance, assignment=assignment,
        client_token=client_token,
        time_spent_ms=clean_time_spent(time_spent_ms), created_at=timezone.now(),
    )
    demonstration.full_clean(validate_unique=False, validate_constraints=False)
    demonstration.save()
    Prompt.objects.filter(pk=prompt.pk).update(demonstrations_count=F("demonstrations_count") + 1)
    return demonstration


@transaction.atomic
def prompt_update(
    *, prompt: Prompt, demonstrations_needed: int | None = None, duplicate_of=False
) -> Prompt:
    """Staff: how many demonstrations a prompt wants; mark or clear a near-duplicate flag
    (pass `duplicate_of=None` to clear it)."""
    changed = []
    if demonstrations_needed is not None and demonstrations_needed != prompt.demonstrations_needed:
        prompt.demonstrations_needed = demonstrations_needed
        changed.append("demonstrations_needed")
    if duplicate_of is not False and duplicate_of != prompt.duplicate_of:
        if duplicate_of is not None and (
            duplicate_of.pk == prompt.pk or duplicate_of.project_id != prompt.project_id
        ):
            raise Invalid("A prompt is a duplicate of another prompt of the same project.")
        prompt.duplicate_of = duplicate_of
        changed.append("duplicate_of")
    if changed:
        prompt.full_clean()
        prompt.save(update_fields=changed)
    return prompt

"""Chats with the live model: every write a labeler makes in a conversation.

Each send, edit or regenerate adds messages (never rewrites one) and asks the live model for the
new reply through `training.services.generations`, which rate-limits and queues it. A labeler
may only chat with versions the project allows (403 otherwise) and only in their own
conversations (404 for anyone else's, the same answer as for one that does not exist).
"""

from django.db import transaction
from django.utils import timezone

from chat.models import ChatSettings, Conversation, Message
from labeling.errors import Conflict, Forbidden, Invalid
from labeling.models import Project
from labeling.validation import clean_text
from training.models import Generation, ModelVersion
from training.services.generations import CHAT_KINDS, generation_request

MAX_MESSAGE_CHARS = 8_000
TITLE_CHARS = 80


def chat_settings(project: Project) -> ChatSettings:
    settings, _ = ChatSettings.objects.get_or_create(project=project)
    return settings


def chat_models(project: Project):
    """The versions labelers of `project` may talk to."""
    return chat_settings(project).model_versions.filter(kind__in=CHAT_KINDS).order_by("-id")


def chat_models_allow(*, project: Project, versions: list[ModelVersion]) -> ChatSettings:
    """Staff: open these versions for chat (the demo opens its base model)."""
    for version in versions:
        if version.kind not in CHAT_KINDS:
            raise Invalid(f"{version.name} is a {version.kind} model: it cannot chat")
        if version.project_id not in (None, project.pk):
            raise Invalid(f"{version.name} belongs to another project")
    settings = chat_settings(project)
    settings.model_versions.add(*versions)
    return settings


def suggestion_request(*, labeler, project: Project, turns, seed: int = 0):
    """A live suggestion for the next assistant turn of a dialogue a labeler is writing: the
    project's newest model open for chat answers `turns` (which end with a user turn)."""
    model = chat_models(project).first()
    if model is None:
        raise Forbidden(f"No model is open for chat in {project.name}: no live suggestions.")
    if not isinstance(turns, list) or not turns:
        raise Invalid("Write the user's turn first: the suggestion answers it.")
    for turn in turns:
        if isinstance(turn, dict) and turn.get("role") == "user":
            clean_text(turn.get("content"), field="A user turn", max_chars=MAX_MESSAGE_CHARS)
    sampling = {**chat_settings(project).sampling(), "seed": seed}
    return generation_request(model_version=model, turns=turns, user=labeler, sampling=sampling)


def branch(message: Message | None) -> list[Message]:
    """The messages from the conversation's start down to `message`."""
    path = []
    while message is not None:
        path.append(message)
        message = message.parent
    return path[::-1]


def turns_of(messages: list[Message]) -> list[dict]:
    return [{"role": m.role, "content": m.text} for m in messages]


@transaction.atomic
def conversation_start(*, labeler, project: Project, model_version: ModelVersion,
                       text: str) -> Conversation:  # fmt: skip
    if not chat_models(project).filter(pk=model_version.pk).exists():
        raise Forbidden(f"{model_version.name} is not open for chat in {project.name}.")
    text = clean_text(text, field="The message", max_chars=MAX_MESSAGE_CHARS)
    title = " ".join(text.split())
    title = title[:TITLE_CHARS] + ("…" if len(title) > TITLE_CHARS else "")
    conversation = Conversation.objects.create(
        project=project, labeler=labeler, model_version=model_version, title=title
    )
    _ask(conversation, parent=None, text=text)
    return conversation


@transaction.atomic
def message_send(*, conversation: Conversation, text: str) -> Message:
    """The labeler's next message after the reply shown last; the model's reply is queued."""
    conversation = _locked(conversation)
    leaf = conversation.current
    if leaf is not None and leaf.role == Message.Role.ASSISTANT:
        _check_finished(leaf)
    return _ask(conversation, parent=leaf, text=text)


@transaction.atomic
def message_edit(*, conversation: Conversation, message: Message, text: str) -> Message:
    """A new version of one of the labeler's messages: a sibling branch with a new reply."""
    conversation = _locked(conversation)
    if message.conversation_id != conversation.pk or message.role != Message.Role.USER:
        raise Invalid("Only your own messages in this conversation can be edited.")
    return _ask(conversation, parent=message.parent, text=text)


@transaction.atomic
def message_regenerate(*, conversation: Conversation, message: Message) -> Message:
    """Another reply to the same message, beside the first (its sibling)."""
    conversation = _locked(conversation)
    if message.conversation_id != conversation.pk or message.role != Message.Role.ASSISTANT:
        raise Invalid("Only a reply of the model can be regenerated.")
    _check_finished(message)
    reply = _reply(conversation, parent=message.parent)
    _touch(conversation, reply)
    return reply


def conversation_switch(*, conversation: Conversation, message: Message) -> Conversation:
    """Show the branch through `message` (a sibling chosen with the arrows): its newest leaf."""
    if message.conversation_id != conversation.pk:
        raise Invalid("That message is not in this conversation.")
    leaf = message
    while (child := leaf.children.order_by("-id").first()) is not None:
        leaf = child
    Conversation.objects.filter(pk=conversation.pk).update(current=leaf)
    conversation.current = leaf
    return conversation


def _ask(conversation: Conversation, *, parent: Message | None, text: str) -> Message:
    text = clean_text(text, field="The message", max_chars=MAX_MESSAGE_CHARS)
    question = Message.objects.create(
        conversation=conversation, parent=parent, role=Message.Role.USER, content=text
    )
    reply = _reply(conversation, parent=question)
    _touch(conversation, reply)
    return question


def _reply(conversation: Conversation, *, parent: Message) -> Message:
    generation = generation_request(
        model_version=conversation.model_version, turns=turns_of(branch(parent)),
        user=conversation.labeler, sampling=chat_settings(conversation.project).sampling(),
    )  # fmt: skip
    return Message.objects.create(
        conversation=conversation, parent=parent, role=Message.Role.ASSISTANT,
        generation=generation,
    )  # fmt: skip


def _check_finished(reply: Message) -> None:
    if reply.generation.status not in Generation.FINISHED:
        raise Conflict("Wait for the model's reply to finish first.")


def _locked(conversation: Conversation) -> Conversation:
    """The row locked: two tabs sending at once make two messages in order, not one lost."""
    return (Conversation.objects.select_for_update(of=("self",))
            .select_related("current__generation", "model_version", "project")
            .get(pk=conversation.pk))  # fmt: skip


def _touch(conversation: Conversation, leaf: Message) -> None:
    conversation.current, conversation.updated_at = leaf, timezone.now()
    conversation.save(update_fields=["current", "updated_at"])

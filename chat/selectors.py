"""What the chat pages read: a person's conversations and the branch of one shown."""

from dataclasses import dataclass

from django.db.models import Prefetch, QuerySet

from chat.models import Conversation, Message
from chat.services.conversations import branch
from labeling.errors import NotFound
from labeling.models import Project
from training.models import ModelVersion
from training.services.generations import CHAT_KINDS


def conversations_visible(user) -> QuerySet:
    """A labeler's own conversations; staff see everyone's."""
    rows = Conversation.objects.select_related("model_version", "project", "labeler")
    return rows if user.is_staff else rows.filter(labeler=user)


def chat_offers() -> list[tuple[Project, list[ModelVersion]]]:
    """The active projects with the versions each has opened for chat (newest first), those
    with none left out: in two queries however many projects there are."""
    open_versions = Prefetch(
        "chat_settings__model_versions", to_attr="open_versions",
        queryset=ModelVersion.objects.filter(kind__in=CHAT_KINDS).order_by("-id"),
    )  # fmt: skip
    projects = (Project.objects.filter(is_active=True, chat_settings__isnull=False)
                .select_related("chat_settings").prefetch_related(open_versions)
                .order_by("name"))  # fmt: skip
    offers = [(project, project.chat_settings.open_versions) for project in projects]
    return [(project, versions) for project, versions in offers if versions]


def conversation_get(user, pk) -> Conversation:
    """One the user may see: someone else's is "not found", never "forbidden" (ids tell nothing)."""
    conversation = conversations_visible(user).filter(pk=pk).first()
    if conversation is None:
        raise NotFound("There is no such conversation among yours.")
    return conversation


@dataclass
class Shown:
    """A message on the page, with where it sits among its siblings (the branches)."""

    message: Message
    position: int
    siblings: list[int]  # ids in creation order

    @property
    def previous(self) -> int | None:
        return self.siblings[self.position - 2] if self.position > 1 else None

    @property
    def next(self) -> int | None:
        return self.siblings[self.position] if self.position < len(self.siblings) else None


def conversation_branch(conversation: Conversation) -> list[Shown]:
    path = branch(conversation.current)
    ids = [m.pk for m in path]
    siblings: dict[int | None, list[int]] = {}
    rows = Message.objects.filter(conversation=conversation).order_by("id")
    for pk, parent in rows.values_list("id", "parent_id"):
        siblings.setdefault(parent, []).append(pk)
    generations = {m.pk: m for m in Message.objects.filter(pk__in=ids)
                   .select_related("generation__model_version")}  # fmt: skip
    shown = []
    for message in path:
        group = siblings.get(message.parent_id, [message.pk])
        shown.append(Shown(generations[message.pk], group.index(message.pk) + 1, group))
    return shown

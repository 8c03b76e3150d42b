"""Conversations with the live model, and the comparisons made from them.

A conversation is a tree of messages: editing a message or regenerating a reply adds a sibling,
so nothing a labeler saw is overwritten, and `current` names the leaf of the branch shown. An
assistant message's text lives on its `training.Generation` (the worker writes it there).
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class ChatSettings(models.Model):
    """Which model versions a project lets its labelers talk to, and how they sample."""

    project = models.OneToOneField(
        "labeling.Project", on_delete=models.CASCADE, related_name="chat_settings"
    )
    model_versions = models.ManyToManyField(
        "training.ModelVersion", blank=True, related_name="+",
        help_text="Versions labelers may chat with (base, SFT or policy models).",
    )  # fmt: skip
    temperature = models.FloatField(default=0.7)
    top_p = models.FloatField(default=0.95)
    max_new_tokens = models.PositiveIntegerField(default=256)

    class Meta:
        verbose_name_plural = "chat settings"

    def __str__(self):
        return f"chat settings of {self.project}"

    def sampling(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens}  # fmt: skip


class Conversation(models.Model):
    project = models.ForeignKey(
        "labeling.Project", on_delete=models.CASCADE, related_name="conversations"
    )
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    model_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, related_name="conversations"
    )
    title = models.CharField(max_length=200)
    current = models.ForeignKey(
        "Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["labeler", "-updated_at"], name="conversation_labeler")]

    def __str__(self):
        return self.title


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)  # a user message's text
    generation = models.OneToOneField(
        "training.Generation", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )  # an assistant message's reply
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role="user", generation__isnull=True)
                | models.Q(role="assistant", generation__isnull=False),
                name="message_role_matches_generation",
            )
        ]

    def __str__(self):
        return f"{self.role} message {self.pk}"

    @property
    def text(self) -> str:
        return self.content if self.role == self.Role.USER else self.generation.text


class ChatComparison(models.Model):
    """A model-written message chosen for ranking: K-1 alternatives are generated from the same
    context, then the K replies become one ranking task whose prompt is the conversation so far."""

    class Status(models.TextChoices):
        GENERATING = "generating", "Generating alternatives"
        CREATED = "created", "Ranking task created"
        FAILED = "failed", "Failed"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="comparisons")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    alternatives = models.ManyToManyField("training.Generation", related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.GENERATING)
    ranking_task = models.ForeignKey(
        "labeling.RankingTask", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"comparison of message {self.message_id}"

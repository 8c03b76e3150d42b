"""The labeled tables: the interface between the people and the machines.

Rows here are written only by `labeling.services` and read by `labeling.selectors` and
`labeling.exports`. Labels (demonstrations, rankings) are never updated after they are written,
so "everything created up to a moment" is a reproducible dataset (see `labeling.exports`).
"""
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

K_MIN, K_MAX = 4, 9


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    guidelines = models.TextField(blank=True)
    k = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(K_MIN), MaxValueValidator(K_MAX)],
        help_text="Completions per ranking task.",
    )
    overlap = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="How many different labelers rank each task.",
    )
    lease_seconds = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(30), MaxValueValidator(86400)]
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(k__gte=K_MIN, k__lte=K_MAX), name="project_k_4_9"),
            models.CheckConstraint(condition=Q(overlap__gte=1), name="project_overlap_positive"),
        ]

    def __str__(self):
        return self.name


class Prompt(models.Model):
    class Source(models.TextChoices):
        IMPORTED = "imported", "Imported"
        LABELER = "labeler", "Written by a labeler"
        DEMO = "demo", "Demo data"
        CHAT = "chat", "From a chat with the model"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    # [{"role": "user"|"assistant", "content": str}, ...] ending with a user turn.
    turns = models.JSONField()
    text = models.TextField(help_text="The turns rendered for display and search.")
    content_hash = models.CharField(max_length=64, db_index=True)
    duplicate_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="duplicates"
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.IMPORTED)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="prompts_written",
    )
    demonstrations_needed = models.PositiveSmallIntegerField(default=1)
    demonstrations_count = models.PositiveSmallIntegerField(default=0)  # denormalized
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["project", "content_hash"], name="prompt_project_hash"),
            # The demonstration queue: prompts still wanting a demonstration, oldest first.
            models.Index(
                fields=["project", "id"], name="prompt_wants_demo",
                condition=Q(demonstrations_count__lt=models.F("demonstrations_needed"))
                & Q(duplicate_of__isnull=True),
            ),
        ]

    def __str__(self):
        return self.text[:80]


class Completion(models.Model):
    """A model-written reply. `model_version_id` is a training.ModelVersion id, deliberately no
    foreign key: labeling does not depend on training."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="completions")
    text = models.TextField()
    model_label = models.CharField(max_length=100, blank=True)
    model_version_id = models.PositiveIntegerField(null=True, blank=True, db_index=True)
    sampling = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"#{self.pk} ({self.model_label or 'model'}): {self.text[:60]}"


class RankingTask(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        COMPLETE = "complete", "Complete"
        CANCELLED = "cancelled", "Cancelled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="ranking_tasks")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="ranking_tasks")
    completions = models.ManyToManyField(
        Completion, through="TaskCompletion", related_name="ranking_tasks"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    rankings_needed = models.PositiveSmallIntegerField(default=1)
    rankings_count = models.PositiveSmallIntegerField(default=0)
    priority = models.IntegerField(default=0)
    # Idempotency key of the push that created the task (`ranking_tasks_create`).
    batch_key = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-priority", "created_at", "id"]
        indexes = [
            # The queue: open tasks of a project, highest priority then oldest first.
            models.Index(
                fields=["project", "status", "-priority", "created_at", "id"],
                name="task_queue",
            ),
            models.Index(fields=["status", "-priority", "created_at", "id"], name="task_queue_all"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "batch_key", "prompt"], condition=~Q(batch_key=""),
                name="task_unique_batch_prompt",
            ),
        ]

    def __str__(self):
        return f"Task #{self.pk} ({self.status}, {self.rankings_count}/{self.rankings_needed})"


class TaskCompletion(models.Model):
    task = models.ForeignKey(RankingTask, on_delete=models.CASCADE, related_name="items")
    # RESTRICT: a ranked completion cannot vanish from under its rankings, but deleting the
    # task (or its prompt) takes it along.
    completion = models.ForeignKey(Completion, on_delete=models.RESTRICT, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["task", "position"]
        constraints = [
            models.UniqueConstraint(fields=["task", "completion"], name="taskcompletion_unique"),
            models.UniqueConstraint(fields=["task", "position"], name="taskcompletion_position"),
        ]

    def __str__(self):
        return f"Task {self.task_id} #{self.position}: completion {self.completion_id}"


class Assignment(models.Model):
    """A lease: one labeler holds one task (or one prompt to demonstrate) until `expires_at`."""

    class Kind(models.TextChoices):
        RANKING = "ranking", "Ranking"
        DEMONSTRATION = "demonstration", "Demonstration"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Expired"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    task = models.ForeignKey(
        RankingTask, on_delete=models.CASCADE, null=True, blank=True, related_name="assignments"
    )
    # Set for both kinds (a ranking task's prompt), so the project is always prompt.project.
    prompt = models.ForeignKey(
        Prompt, on_delete=models.CASCADE, null=True, blank=True, related_name="assignments"
    )
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["task", "status", "expires_at"], name="assignment_task_lease"),
            models.Index(fields=["prompt", "status", "expires_at"], name="assignment_prompt_lease"),
            models.Index(fields=["labeler", "status"], name="assignment_labeler_status"),
        ]
        constraints = [
            # One open lease per labeler and kind: a double-clicked "next task" cannot take two.
            models.UniqueConstraint(
                fields=["labeler", "kind"], condition=Q(status="active"),
                name="assignment_one_active_per_kind",
            ),
            models.CheckConstraint(
                condition=Q(kind="ranking", task__isnull=False)
                | Q(kind="demonstration", task__isnull=True, prompt__isnull=False),
                name="assignment_kind_target",
            ),
        ]

    def __str__(self):
        return f"{self.kind} lease #{self.pk} ({self.status})"

    def is_live(self, now=None) -> bool:
        return self.status == self.Status.ACTIVE and self.expires_at > (now or timezone.now())


class Demonstration(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="demonstrations")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="demonstrations"
    )
    turns = models.JSONField(help_text="The whole dialogue, ending with the assistant reply.")
    is_dialogue = models.BooleanField(default=False)
    suggestion = models.ForeignKey(
        Completion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    assignment = models.OneToOneField(
        Assignment, on_delete=models.SET_NULL, null=True, blank=True, related_name="demonstration"
    )
    time_spent_ms = models.PositiveIntegerField(default=0)
    client_token = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"Demonstration #{self.pk} by {self.author_id}"


class Ranking(models.Model):
    task = models.ForeignKey(RankingTask, on_delete=models.CASCADE, related_name="rankings")
    # PROTECT: a labeler's labels outlive a deleted account only by deactivating it.
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rankings"
    )
    assignment = models.OneToOneField(
        Assignment, on_delete=models.RESTRICT, related_name="ranking"
    )
    # Groups of completion ids, best to worst; a group of more than one id is a tie.
    order = models.JSONField()
    all_bad = models.BooleanField(default=False)
    flags = models.JSONField(default=dict, blank=True)  # {"<completion id>": ["harmful", ...]}
    comment = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "labeler"], name="ranking_one_per_labeler"),
        ]

    def __str__(self):
        return f"Ranking #{self.pk} of task {self.task_id} by {self.labeler_id}"


class Skip(models.Model):
    kind = models.CharField(max_length=16, choices=Assignment.Kind.choices)
    task = models.ForeignKey(
        RankingTask, on_delete=models.CASCADE, null=True, blank=True, related_name="skips"
    )
    prompt = models.ForeignKey(
        Prompt, on_delete=models.CASCADE, null=True, blank=True, related_name="skips"
    )
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="skips"
    )
    assignment = models.OneToOneField(
        Assignment, on_delete=models.CASCADE, null=True, blank=True, related_name="skip"
    )
    reason = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Skip of {self.kind} by {self.labeler_id}: {self.reason[:40]}"


class ExportSnapshot(models.Model):
    """A record of one export: which project, as of which moment, how many rows, which digests.

    The id string `<slug>@<as_of>` names the dataset; the digests prove two reads were equal.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="snapshots")
    snapshot_id = models.CharField(max_length=160, unique=True)
    as_of = models.DateTimeField()
    counts = models.JSONField(default=dict)
    digests = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-as_of"]

    def __str__(self):
        return self.snapshot_id

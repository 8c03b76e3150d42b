"""The evaluation tables: blind pairwise comparisons of model versions on held-out prompts.

    ComparisonBatch   staff chose versions x evaluation prompts; replies are sampled by workers
    ComparisonReply   one version's reply to one prompt of the batch (a `Completion`)
    ComparisonTask    one prompt, two replies of two versions, left and right drawn at random
    Vote              one person's verdict on two replies: from a comparison task, or (later)
                      from the arena, where two versions answer the same chat message live

Model versions are kept as plain ids (as `Completion.model_version_id`): labeling does not
depend on training. A vote copies the versions and sides it was cast on, so the leaderboard
reads one table whatever the source.
"""
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from labeling.models import Assignment, Completion, Project, Prompt

LIKERT_MIN, LIKERT_MAX = 1, 7
# InstructGPT's per-reply metadata (Ouyang et al. 2022, table 3 / appendix B).
REPLY_FLAGS = {
    "fails_instruction": "Fails to follow the instruction",
    "made_up_facts": "Makes up facts",
    "inappropriate": "Inappropriate for a customer assistant",
    "harmful": "Harmful content",
}


class ComparisonBatch(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"  # replies come in from the workers, tasks are made as they do
        CANCELLED = "cancelled", "Cancelled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="comparisons")
    version_ids = models.JSONField(help_text="The compared training.ModelVersion ids.")
    version_names = models.JSONField(default=dict, help_text="{id: name}, for staff pages.")
    prompts = models.ManyToManyField(Prompt, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    votes_needed = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="Different labelers voting on each pair.",
    )
    sampling = models.JSONField(default=dict, blank=True, help_text="The sampling settings.")
    run_ids = models.JSONField(default=dict, blank=True, help_text="{version id: sample run id}")
    # Idempotency key of the request that made it (a double-clicked form makes one batch).
    request_token = models.CharField(max_length=100, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Comparison #{self.pk} of {len(self.version_ids)} versions ({self.status})"


class ComparisonReply(models.Model):
    batch = models.ForeignKey(ComparisonBatch, on_delete=models.CASCADE, related_name="replies")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="+")
    version_id = models.PositiveIntegerField()
    completion = models.OneToOneField(Completion, on_delete=models.RESTRICT, related_name="+")

    class Meta:
        ordering = ["batch", "prompt", "version_id"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "prompt", "version_id"],
                                    name="comparisonreply_one_per_version"),
        ]

    def __str__(self):
        return f"Reply of version {self.version_id} to prompt {self.prompt_id}"


class ComparisonTask(models.Model):
    """Left (A) and right (B) are fixed when the task is made, at random: the page shows them in
    that order and the vote records which side won, so position bias can be measured."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        COMPLETE = "complete", "Complete"
        CANCELLED = "cancelled", "Cancelled"

    batch = models.ForeignKey(ComparisonBatch, on_delete=models.CASCADE, related_name="tasks")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="comparison_tasks")
    completion_a = models.ForeignKey(Completion, on_delete=models.RESTRICT, related_name="+")
    completion_b = models.ForeignKey(Completion, on_delete=models.RESTRICT, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    votes_needed = models.PositiveSmallIntegerField(default=1)
    votes_count = models.PositiveSmallIntegerField(default=0)
    priority = models.IntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-priority", "created_at", "id"]
        indexes = [
            models.Index(fields=["project", "status", "-priority", "created_at", "id"],
                         name="comparison_queue"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["batch", "completion_a", "completion_b"],
                                    name="comparisontask_unique_pair"),
            models.CheckConstraint(condition=~Q(completion_a=models.F("completion_b")),
                                   name="comparisontask_two_replies"),
        ]

    def __str__(self):
        return f"Comparison task #{self.pk} ({self.status}, {self.votes_count}/{self.votes_needed})"


class Vote(models.Model):
    class Source(models.TextChoices):
        COMPARISON = "comparison", "Comparison task"
        ARENA = "arena", "Arena (live chat)"

    class Outcome(models.TextChoices):
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both are bad"

    source = models.CharField(max_length=16, choices=Source.choices)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="votes")
    task = models.ForeignKey(
        ComparisonTask, on_delete=models.CASCADE, null=True, blank=True, related_name="votes"
    )
    assignment = models.OneToOneField(
        Assignment, on_delete=models.RESTRICT, null=True, blank=True, related_name="vote"
    )
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="votes"
    )
    # What was compared, copied from the task (or the arena's two messages): A is the left side.
    version_a_id = models.PositiveIntegerField()
    version_b_id = models.PositiveIntegerField()
    completion_a = models.ForeignKey(
        Completion, on_delete=models.RESTRICT, null=True, blank=True, related_name="+"
    )
    completion_b = models.ForeignKey(
        Completion, on_delete=models.RESTRICT, null=True, blank=True, related_name="+"
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    likert_a = models.PositiveSmallIntegerField(
        null=True, blank=True,
        validators=[MinValueValidator(LIKERT_MIN), MaxValueValidator(LIKERT_MAX)],
    )
    likert_b = models.PositiveSmallIntegerField(
        null=True, blank=True,
        validators=[MinValueValidator(LIKERT_MIN), MaxValueValidator(LIKERT_MAX)],
    )
    flags = models.JSONField(default=dict, blank=True)  # {"a": ["harmful"], "b": [...]}
    comment = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "created_at"], name="vote_project_recent")]
        constraints = [
            models.UniqueConstraint(fields=["task", "labeler"], condition=Q(task__isnull=False),
                                    name="vote_one_per_labeler_task"),
            models.CheckConstraint(
                condition=~Q(source="comparison") | Q(task__isnull=False),
                name="vote_comparison_has_task",
            ),
            models.CheckConstraint(condition=~Q(version_a_id=models.F("version_b_id")),
                                   name="vote_two_versions"),
            models.CheckConstraint(
                condition=(Q(likert_a__isnull=True) | Q(likert_a__gte=LIKERT_MIN,
                                                        likert_a__lte=LIKERT_MAX))
                & (Q(likert_b__isnull=True) | Q(likert_b__gte=LIKERT_MIN,
                                                likert_b__lte=LIKERT_MAX)),
                name="vote_likert_1_7",
            ),
        ]

    def __str__(self):
        return f"Vote #{self.pk} ({self.source}): {self.outcome}"

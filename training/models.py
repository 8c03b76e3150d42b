"""The machine side's tables: model versions (the lineage) and training runs.

A `TrainingRun` is one unit of work a Celery worker does (pretrain, SFT, reward model, PPO or
sample). It records its config, the exact labeled rows it used (the dataset snapshot), its
status, progress and metric history, and the model version it produced. A `ModelVersion` names
its parent and the run that made it, so any model can be traced to its labels.

Rows are written only by `training.services` (status changes in one place:
`training.services.runs`) and read by `training.selectors`.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ModelVersion(models.Model):
    class Kind(models.TextChoices):
        BASE = "base", "Base"
        SFT = "sft", "SFT"
        REWARD = "reward", "Reward model"
        POLICY = "policy", "Policy (PPO)"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=100)
    project = models.ForeignKey(
        "labeling.Project",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="model_versions",
    )
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="children"
    )
    run = models.ForeignKey(
        "TrainingRun",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The run that produced this version (none for an imported base model).",
    )
    checkpoint_dir = models.CharField(max_length=500)
    tokenizer_path = models.CharField(max_length=500)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One output per run: a run finished twice (a redelivered task) cannot make two.
            models.UniqueConstraint(
                fields=["run"], condition=Q(run__isnull=False), name="modelversion_one_per_run"
            ),
        ]

    def __str__(self):
        return self.name


class TrainingRun(models.Model):
    class Kind(models.TextChoices):
        PRETRAIN = "pretrain", "Pretrain"
        SFT = "sft", "SFT"
        REWARD = "reward", "Reward model"
        PPO = "ppo", "PPO"
        DPO = "dpo", "DPO"
        SAMPLE = "sample", "Sample for ranking"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    # Passed with the run id to the task: a message left in Redis by another database (an old
    # test run, a restored backup) never starts a different run that happens to share the id.
    key = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    project = models.ForeignKey(
        "labeling.Project",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="training_runs",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    config = models.JSONField(default=dict, blank=True)
    # Inputs: the model to start from (SFT: base; reward and PPO: SFT or policy; sample: any)
    # and, for PPO, the reward model.
    input_model = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="runs_as_input"
    )
    reward_model = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="runs_as_reward"
    )
    output_model = models.ForeignKey(
        ModelVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The dataset snapshot: exactly the rows used, and the labeling export id naming them.
    snapshot_id = models.CharField(max_length=200, blank=True)
    demonstrations = models.ManyToManyField("labeling.Demonstration", blank=True, related_name="+")
    rankings = models.ManyToManyField("labeling.Ranking", blank=True, related_name="+")
    prompts = models.ManyToManyField("labeling.Prompt", blank=True, related_name="+")

    step = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True, help_text="The latest metrics.")
    log_tail = models.TextField(blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)
    attempt = models.PositiveIntegerField(default=0, help_text="How many times a worker took it.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    request_token = models.CharField(max_length=64, null=True, blank=True, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="run_project_recent"),
            models.Index(fields=["status", "heartbeat_at"], name="run_status_heartbeat"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} run #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def percent(self) -> int:
        return int(100 * self.step / self.total) if self.total else 0


class RunMetric(models.Model):
    """One point of a run's curves: the metrics reported at `step`."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metric_points")
    step = models.PositiveIntegerField()
    values = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "step", "id"]
        indexes = [models.Index(fields=["run", "step"], name="runmetric_run_step")]

    def __str__(self):
        return f"run {self.run_id} step {self.step}"


class Round(models.Model):
    """One pass of the loop in a project: the policy samples K replies per prompt (pushed as
    ranking tasks) -> people rank them -> a reward model -> PPO -> a new policy, which the next
    round samples from; with `config["method"] = "dpo"` one DPO run on the rankings takes the
    place of the reward model and PPO. `training.services.rounds` moves it on when a run
    finishes or enough rankings are in; `stage` is where it waits. With `config["evaluate"]` it
    ends with a blind human comparison of the new policy against the one it started from (and
    their SFT model) on the evaluation prompts (`comparison`), the reward model scoring the same
    replies."""

    class Stage(models.TextChoices):
        SAMPLING = "sampling", "Sampling"
        RANKING = "ranking", "Waiting for rankings"
        REWARD = "reward", "Training the reward model"
        PPO = "ppo", "Running PPO"
        DPO = "dpo", "Training the policy with DPO"
        EVALUATE = "evaluate", "Sampling for human evaluation"
        DONE = "done", "Done"

    project = models.ForeignKey("labeling.Project", on_delete=models.PROTECT, related_name="rounds")
    number = models.PositiveIntegerField()
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.SAMPLING)
    policy = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="rounds_sampled",
        help_text="The model this round samples from and PPO starts from.",
    )  # fmt: skip
    sample_run = models.ForeignKey(
        TrainingRun, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reward_run = models.ForeignKey(
        TrainingRun, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    ppo_run = models.ForeignKey(
        TrainingRun, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    dpo_run = models.ForeignKey(
        TrainingRun, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    comparison = models.ForeignKey(
        "labeling.ComparisonBatch", on_delete=models.PROTECT, null=True, blank=True,
        related_name="+",
    )
    # {"sample": {...}, "reward": {...}, "ppo": {...}, "dpo": {...}, "preset": "tiny",
    #  "chain": true, "evaluate": false, "reward_init": "sft", "method": "ppo", "sample_mix": ""}
    config = models.JSONField(default=dict, blank=True)
    rankings_needed = models.PositiveIntegerField(
        default=0, help_text="Ranked tasks of this round before the reward model (0: all)."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="round_number_per_project"),
            # One open round per project: "continue" never starts two chains.
            models.UniqueConstraint(
                fields=["project"], condition=~Q(stage="done"), name="round_one_open_per_project"
            ),
        ]

    def __str__(self):
        return f"round {self.number} of {self.project_id} ({self.stage})"

    @property
    def current_run(self) -> TrainingRun | None:
        if self.stage == self.Stage.EVALUATE:
            return self.evaluation_runs()[0] if self.comparison_id else None
        return {"sampling": self.sample_run, "reward": self.reward_run, "ppo": self.ppo_run,
                "dpo": self.dpo_run}.get(self.stage)  # fmt: skip

    @property
    def policy_run(self) -> TrainingRun | None:
        """The run that makes the round's new policy: PPO, or DPO with `config["method"]`."""
        return self.dpo_run or self.ppo_run

    def evaluation_runs(self) -> list[TrainingRun]:
        """The comparison's sample runs, one not yet succeeded first (the one to watch)."""
        runs = TrainingRun.objects.filter(pk__in=self.comparison.run_ids.values()).order_by("id")
        return sorted(runs, key=lambda r: r.status == TrainingRun.Status.SUCCEEDED)

class Generation(models.Model):
    """One reply the live model writes for a person (a chat turn, a suggestion, an alternative).

    The web app writes the row and puts its key on the inference worker's Redis stream; the
    worker streams tokens to Redis as it makes them and writes the finished text here, so a
    reply survives a closed browser and a restarted worker (which takes the request again).
    `on_done` names a Celery task called with the row's id once the text is in.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Generating"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    FINISHED = (Status.DONE, Status.FAILED)

    key = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="generations"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="generations",
    )  # fmt: skip
    # The dialogue to answer: [{"role", "content"}, ...] ending with a user turn.
    turns = models.JSONField()
    # temperature, top_p, max_new_tokens, seed.
    sampling = models.JSONField(default=dict)
    on_done = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    text = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=16, blank=True)  # stop, length
    error = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    # Oldest turns left out because the dialogue was longer than the model's context.
    dropped_turns = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["requested_by", "created_at"], name="generation_rate")]

    def __str__(self):
        return f"generation {self.key} ({self.model_version.name}, {self.status})"

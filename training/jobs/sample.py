"""Sampling, the push back: K completions (the project's k) for each of the run's prompts
from the input model -> ranking tasks in the project (`labeling.services.ranking_tasks.
ranking_tasks_create`), batch by batch. With `mix_model`, a second model writes `mix_replies`
of each task's K (the labelers see them shuffled, each reply records its model). Idempotent:
the batch key is the run's, so a resumed run skips the prompts it already pushed and a retried
push creates nothing twice.

With `config["comparison"]` (a blind comparison, `training.services.evaluation`): one reply per
evaluation prompt -> `labeling.services.comparisons.comparison_replies_add`, idempotent the same
way (a prompt the version already answered in that batch is skipped)."""

import time
from dataclasses import dataclass

from django.conf import settings

from labeling.models import ComparisonReply, ComparisonTask, RankingTask
from labeling.services.comparisons import comparison_replies_add
from labeling.services.ranking_tasks import ranking_tasks_create
from labeling.validation import EMPTY_REPLY
from training.errors import Invalid
from training.jobs.declaration import Outcome, RunKind
from training.ml.configs import SampleRunConfig
from training.ml.progress import Progress
from training.models import ModelVersion
from training.selectors import versions_for_project

PROMPTS_PER_BATCH = 8


def batch_key(run) -> str:
    return f"training-run-{run.pk}"


@dataclass
class RankingPush:
    """K replies per prompt -> ranking tasks."""

    run: object

    @property
    def per_prompt(self) -> int:
        return self.run.project.k

    def done(self) -> set[int]:
        return set(RankingTask.objects.filter(project=self.run.project, batch_key=batch_key(
            self.run)).values_list("prompt_id", flat=True))  # fmt: skip

    def score(self, prompts, responses, replies) -> None:
        pass  # ranking replies are scored by people

    def push(self, replies: dict[int, list[dict]]) -> None:
        ranking_tasks_create(project=self.run.project, prompt_completions=list(replies.items()),
                             batch_key=batch_key(self.run), priority=self.run.config["priority"])

    def metrics(self) -> dict:
        return {"ranking_tasks": RankingTask.objects.filter(
            project=self.run.project, batch_key=batch_key(self.run)).count()}  # fmt: skip


@dataclass
class ComparisonPush:
    """One reply per evaluation prompt -> a blind comparison's replies (and its tasks); with
    the run's reward model, each reply's score goes with it (`sampling["reward"]`)."""

    run: object
    scorer: object = None  # a training.ml.reward.RewardModelScorer
    per_prompt = 1

    @property
    def batch_id(self) -> int:
        return self.run.config["comparison"]

    def done(self) -> set[int]:
        return set(ComparisonReply.objects.filter(
            batch_id=self.batch_id, version_id=self.run.input_model_id
        ).values_list("prompt_id", flat=True))  # fmt: skip

    def score(self, prompts: list[list[int]], responses: list[list[int]], replies: list[dict]):
        if self.scorer is not None:
            for reply, value in zip(replies, self.scorer.score_batch(prompts, responses),
                                    strict=True):  # fmt: skip
                reply["sampling"]["reward"] = value

    def push(self, replies: dict[int, list[dict]]) -> None:
        comparison_replies_add(
            batch_id=self.batch_id, version_id=self.run.input_model_id,
            replies=[(p, r["text"], r["sampling"]) for p, [r] in replies.items()],
            priority=self.run.config["priority"],
        )  # fmt: skip

    def metrics(self) -> dict:
        return {"comparison_tasks": ComparisonTask.objects.filter(batch_id=self.batch_id).count()}


def rows(snapshot, config: dict) -> None:
    if config.get("comparison"):  # a blind comparison: the batch's evaluation prompts, all
        snapshot.take_comparison_prompts(config["comparison"], purpose="a comparison")
    else:
        snapshot.take_prompts_to_sample(config["num_prompts"], purpose="sampling")


def check(config: dict, *, project, input_model) -> None:
    """`mix_model`: another base, SFT or policy model of the project, writing at least one and
    at most K - 1 of each ranking task's replies."""
    mix = config.get("mix_model")
    if mix is None:
        return
    if config.get("comparison"):
        raise Invalid("A comparison's replies come from the models it compares: mix_model is "
                      "for ranking tasks.")  # fmt: skip
    version = versions_for_project(project=project, kinds=TAKES).filter(pk=mix).first()
    if version is None:
        raise Invalid(f"mix_model: the project has no base, SFT or policy model #{mix}.")
    if version == input_model:
        raise Invalid(f"mix_model is {version.name}, the run's own model: name a second model.")
    if not 1 <= config["mix_replies"] < project.k:
        raise Invalid(f"mix_replies is {config['mix_replies']}, but each task has {project.k} "
                      f"replies and the run's model writes at least one: give 1 to "
                      f"{project.k - 1}.")  # fmt: skip


@dataclass
class Source:
    """A model that writes `count` of each prompt's replies, in its own tokens."""

    version: ModelVersion
    model: object
    tokenizer: object
    count: int

    @classmethod
    def load(cls, version: ModelVersion, dtype, count: int = 0) -> "Source":
        from training.jobs.common import load_version

        model, tokenizer = load_version(version)
        return cls(version, model.to(dtype), tokenizer, count)


def run(context) -> Outcome:
    from training.jobs.common import device, load_version
    from training.ml.device import sampling_dtype
    from training.ml.reward import RewardModelScorer
    from training.ml.sampling import SampleConfig, generate

    run, cfg = context.run, context.run.config
    dtype = sampling_dtype(device(), settings.SAMPLING_DTYPE)
    precision = str(dtype).removeprefix("torch.")
    mixed = cfg["mix_replies"] if cfg.get("mix_model") else 0
    sources = [Source.load(run.input_model, dtype)]
    if mixed:
        sources.append(Source.load(ModelVersion.objects.get(pk=cfg["mix_model"]), dtype, mixed))
    first = sources[0]
    if cfg.get("comparison"):
        scorer = None
        if run.reward_model is not None:
            reward_model, _ = load_version(run.reward_model)
            scorer = RewardModelScorer(reward_model, pad_id=first.tokenizer.pad_id)
        target = ComparisonPush(run, scorer)
    else:
        target = RankingPush(run)
    first.count = target.per_prompt - mixed
    done = target.done()
    todo, too_long = [], 0
    for prompt_id, turns in run.prompts.order_by("id").values_list("id", "turns"):
        ids = [source.tokenizer.render_prompt(turns) for source in sources]
        if any(len(i) > s.model.config.block_size - cfg["max_new_tokens"]
               for i, s in zip(ids, sources, strict=True)):  # fmt: skip
            too_long += 1
        elif prompt_id not in done:
            todo.append((prompt_id, ids))
    batches = [todo[i : i + PROMPTS_PER_BATCH] for i in range(0, len(todo), PROMPTS_PER_BATCH)]
    context.log(f"sampling {' and '.join(f'{s.count} from {s.version.name}' for s in sources)} "
                f"per prompt for {len(todo)} prompts in {precision}"
                + (f" ({len(done)} pushed before)" if done else "")
                + (f"; {too_long} prompts too long, skipped" if too_long else ""))  # fmt: skip
    sampling = {name: cfg[name] for name in ("temperature", "top_k", "top_p", "max_new_tokens")}
    started, completions, tokens = time.monotonic(), 0, 0
    for number, batch in enumerate(batches, start=1):
        replies: dict[int, list[dict]] = {prompt_id: [] for prompt_id, _ in batch}
        for n, source in enumerate(sources):
            config = SampleConfig(num_samples=source.count, seed=cfg["seed"] + number, **sampling)
            prompts = [ids[n] for _, ids in batch]
            samples = generate(source.model, prompts, config, stop_id=source.tokenizer.end_id,
                               pad_id=source.tokenizer.pad_id)  # fmt: skip
            made = []
            for index, response, finished in zip(samples.prompt_index, samples.responses,
                                                 samples.finished, strict=True):  # fmt: skip
                text = source.tokenizer.decode(response).strip() or EMPTY_REPLY
                made.append({
                    "text": text, "model_label": source.version.name,
                    "model_version_id": source.version.pk,
                    "sampling": {**sampling, "seed": config.seed, "finished": finished,
                                 "run": run.pk, "dtype": precision},
                })  # fmt: skip
                replies[batch[index][0]].append(made[-1])
                tokens += len(response)
            target.score([prompts[i] for i in samples.prompt_index], samples.responses, made)
            completions += len(samples.responses)
        target.push(replies)
        seconds = max(time.monotonic() - started, 1e-9)
        metrics = {
            "completions": completions,
            "completions_per_second": completions / seconds,
            "tokens_per_second": tokens / seconds,
            "skipped_long_prompts": too_long,
        }
        if context.reporter(Progress("sample", number, len(batches), metrics)):
            return Outcome(stopped=True)
    seconds = time.monotonic() - started
    return Outcome(metrics={
        **target.metrics(), "completions": completions, "seconds": seconds,
        "completions_per_second": completions / seconds if seconds else 0.0,
        "tokens_per_second": tokens / seconds if seconds else 0.0,
        "skipped_long_prompts": too_long,
    })  # fmt: skip


TAKES = ("base", "sft", "policy")
KIND = RunKind(
    name="sample",
    title="Sample K completions per prompt for ranking",
    noun="a sampling run",
    order=30,
    config=SampleRunConfig,
    run=run,
    takes=TAKES,
    # scores its replies when given one (a round's evaluation: what the reward model thinks of
    # the replies people compare)
    reward_model="optional",
    queue="sampling",
    rows=rows,
    check=check,
    charts={"completions per second": ("completions_per_second",)},
)

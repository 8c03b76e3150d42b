"""Sample job, the push back: K completions (the project's k) for each of the run's prompts
from the input model -> ranking tasks in the project (`labeling.services.tasks.
ranking_tasks_create`), batch by batch. Idempotent: the batch key is the run's, so a resumed
run skips the prompts it already pushed and a retried push creates nothing twice."""

import time

from django.conf import settings

from labeling.models import RankingTask
from labeling.services.tasks import ranking_tasks_create
from labeling.validation import EMPTY_REPLY
from training.jobs.common import device, load_version
from training.jobs.runner import Outcome
from training.ml.device import sampling_dtype
from training.ml.progress import Progress
from training.ml.sampling import SampleConfig, generate

PROMPTS_PER_BATCH = 8


def batch_key(run) -> str:
    return f"training-run-{run.pk}"


def run(context) -> Outcome:
    run, cfg = context.run, context.run.config
    project, version = run.project, run.input_model
    model, tokenizer = load_version(version)
    dtype = sampling_dtype(device(), settings.SAMPLING_DTYPE)
    model.to(dtype)
    precision = str(dtype).removeprefix("torch.")
    done = set(RankingTask.objects.filter(project=project, batch_key=batch_key(run))
               .values_list("prompt_id", flat=True))  # fmt: skip
    limit = model.config.block_size - cfg["max_new_tokens"]
    todo, too_long = [], 0
    for prompt_id, turns in run.prompts.order_by("id").values_list("id", "turns"):
        ids = tokenizer.render_prompt(turns)
        if len(ids) > limit:
            too_long += 1
        elif prompt_id not in done:
            todo.append((prompt_id, ids))
    batches = [todo[i : i + PROMPTS_PER_BATCH] for i in range(0, len(todo), PROMPTS_PER_BATCH)]
    context.log(f"sampling {project.k} completions for {len(todo)} prompts from {version.name} "
                f"in {precision}"
                + (f" ({len(done)} pushed before)" if done else "")
                + (f"; {too_long} prompts too long, skipped" if too_long else ""))  # fmt: skip
    sampling = {name: cfg[name] for name in ("temperature", "top_k", "top_p", "max_new_tokens")}
    started, completions, tokens = time.monotonic(), 0, 0
    for number, batch in enumerate(batches, start=1):
        config = SampleConfig(num_samples=project.k, seed=cfg["seed"] + number, **sampling)
        samples = generate(model, [ids for _, ids in batch], config,
                           stop_id=tokenizer.end_id, pad_id=tokenizer.pad_id)  # fmt: skip
        replies: dict[int, list[dict]] = {prompt_id: [] for prompt_id, _ in batch}
        for index, response, finished in zip(samples.prompt_index, samples.responses,
                                             samples.finished, strict=True):  # fmt: skip
            text = tokenizer.decode(response).strip() or EMPTY_REPLY
            replies[batch[index][0]].append({
                "text": text, "model_label": version.name, "model_version_id": version.pk,
                "sampling": {**sampling, "seed": config.seed, "finished": finished, "run": run.pk,
                             "dtype": precision},
            })  # fmt: skip
            tokens += len(response)
        ranking_tasks_create(project=project, prompt_completions=list(replies.items()),
                             batch_key=batch_key(run), priority=cfg["priority"])  # fmt: skip
        completions += len(samples.responses)
        seconds = max(time.monotonic() - started, 1e-9)
        metrics = {
            "completions": completions,
            "completions_per_second": completions / seconds,
            "tokens_per_second": tokens / seconds,
            "skipped_long_prompts": too_long,
        }
        if context.reporter(Progress("sample", number, len(batches), metrics)):
            return Outcome(stopped=True)
    tasks = RankingTask.objects.filter(project=project, batch_key=batch_key(run)).count()
    seconds = time.monotonic() - started
    return Outcome(metrics={
        "ranking_tasks": tasks, "completions": completions, "seconds": seconds,
        "completions_per_second": completions / seconds if seconds else 0.0,
        "tokens_per_second": tokens / seconds if seconds else 0.0,
        "skipped_long_prompts": too_long,
    })  # fmt: skip

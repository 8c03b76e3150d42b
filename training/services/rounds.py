"""Rounds: the loop chained. A round samples from its policy (ranking tasks pushed to people),
waits until enough of those tasks are ranked, trains a reward model on every ranking of the
project, runs PPO from its policy against it, with `config["evaluate"]` samples the new
policy, its parent and their SFT model on the evaluation prompts for a blind human comparison
(the reward model scoring the same replies), and (unless told not to) starts the next round
from the new policy. The reward model starts from the policy's SFT model (InstructGPT), or with
`config["reward_init"] = "base"` from the base model under it. With `config["method"] = "dpo"`
one DPO run from the policy on the project's rankings is the policy step instead of the reward
model and PPO (no reward model: the evaluation's replies go unscored). With
`config["chat_comparisons"] = n` a round also starts ChatGPT's comparison data: n model-written
messages of the project's chats, picked at random, each with K-1 alternatives that become a
ranking task (`chat.services.comparisons`), ranked beside the round's own samples. With
`config["sample_mix"] = "base"` (or "sft") that model writes `sample.mix_replies` of each
ranking task's K replies beside the policy's (InstructGPT ranked replies of several models).
People's votes on the human evaluation come in after the round is done; the project page sets
them beside the reward model's opinion (`training.round_evaluation`).

    round_start(project=p, policy=sft)      # round 1: its sample run is queued
    round_advance(round_id=r.pk)            # one call moves it as far as it can go now

`round_advance` is idempotent: it is called when a run of the round finishes (the Celery task,
`rounds_after_run`), by the "continue round" button, by `manage.py continue_round` and, for
rankings that came in since, every minute by the periodic task `continue_waiting_rounds`.
Each stage's run is made with a request token naming the round and the stage, so two callers at
once never make two runs, and it is handed to a worker only after the round's row is committed.
"""

import logging

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from chat.services.comparisons import (
    MAX_PER_REQUEST,
    chat_comparisons_create,
    comparable_messages,
)
from labeling.services.comparisons import evaluation_prompts
from training import presets
from training.errors import Conflict, Invalid
from training.models import ModelVersion, Round, TrainingRun
from training.selectors import (
    ancestor,
    latest_version,
    rounds_for_project,
    sft_ancestor,
    suggested_preset,
)
from training.services.evaluation import comparison_start
from training.services.runs import run_create, run_enqueue, run_resume

logger = logging.getLogger(__name__)
S, St = TrainingRun.Status, Round.Stage
STAGE_KINDS = ("sample", "reward", "ppo", "dpo")
# The policy step after the rankings: a reward model then PPO, or DPO straight from the rankings.
METHODS = ("ppo", "dpo")
# What a round's reward model starts from: the policy's SFT model (InstructGPT: it already
# reads the task's prompts and replies) or the base model that SFT model was trained from (a
# reward model that has not learned to like the SFT model's own way of answering).
REWARD_INIT = ("sft", "base")
# A second model writing part of each ranking task's replies (`training.jobs.sample`, mix_model):
# none, or the base or SFT model the policy descends from. The policy's own replies narrow as
# it trains; a preference that none of them shows cannot be ranked, let alone learned.
SAMPLE_MIX = ("", "base", "sft")


def round_start(
    *, project, policy: ModelVersion | None = None, config: dict | None = None,
    rankings_needed: int = 0, created_by=None, enqueue_it: bool = True,
) -> Round:  # fmt: skip
    """Open the project's next round from `policy` (default: its newest policy or SFT model)
    and queue its sample run. Refused while another round of the project is open."""
    config = _clean(config or {})
    policy = policy or latest_version(kinds=["policy", "sft"], project=project)
    if policy is None or policy.kind not in ("sft", "policy"):
        raise Invalid("A round samples from an SFT model or a policy: run SFT first.")
    if config["reward_init"] == "base" and ancestor(policy, ModelVersion.Kind.BASE) is None:
        raise Invalid(f"reward_init is base, but {policy.name} descends from no base model.")
    mix = sample_mix(policy, config)
    try:
        with transaction.atomic():
            if Round.objects.filter(project=project).exclude(stage=St.DONE).exists():
                raise Conflict("This project already has an open round: continue that one.")
            number = Round.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0
            round_ = Round.objects.create(
                project=project, number=number + 1, policy=policy, config=config,
                rankings_needed=rankings_needed, created_by=created_by,
            )  # fmt: skip
            _make_run(round_, "sample", input_model=policy, enqueue_it=enqueue_it, resolved=mix)
            if config["chat_comparisons"] and comparable_messages(project).exists():
                chat_comparisons_create(project=project, requested_by=created_by,
                                        count=config["chat_comparisons"], seed=round_.number)
    except IntegrityError:
        raise Conflict("This project already has an open round: continue that one.") from None
    return round_


def round_advance(
    *, round_id: int, resume: bool = False, by=None, enqueue_it: bool = True
) -> Round:
    """Move the round on as far as its runs and rankings allow. With `resume`, a failed or
    cancelled run of the current stage is queued again (from its last checkpoint)."""
    with transaction.atomic():
        round_ = (
            Round.objects.select_for_update().select_related("project", "policy").get(pk=round_id)
        )
        run = round_.current_run
        if resume and run is not None and run.status in (S.FAILED, S.CANCELLED):
            transaction.on_commit(lambda: run_resume(run_id=run.pk, by=by))
            return round_
        while _step(round_, by=by, enqueue_it=enqueue_it):
            pass
    return round_


def _step(round_: Round, *, by, enqueue_it: bool) -> bool:
    """One move, or False when the round has to wait (a run going, too few rankings, done)."""
    stage = round_.stage
    run = round_.current_run
    if stage in (St.SAMPLING, St.REWARD, St.PPO, St.DPO) and (
        run is None or run.status != S.SUCCEEDED
    ):
        return False
    if stage == St.EVALUATE:
        if any(r.status != S.SUCCEEDED for r in round_.evaluation_runs()):
            return False
        return _finish(round_, by=by, enqueue_it=enqueue_it)
    if stage == St.SAMPLING:
        return _move(round_, St.RANKING)
    if stage == St.RANKING:
        ranked, needed = round_rankings(round_)
        if ranked < needed:
            return False
        if round_.config.get("method") == "dpo":
            _make_run(round_, "dpo", input_model=round_.policy, by=by, enqueue_it=enqueue_it)
            return _move(round_, St.DPO)
        _make_run(round_, "reward", input_model=reward_source(round_), by=by,
                  enqueue_it=enqueue_it)  # fmt: skip
        return _move(round_, St.REWARD)
    if stage == St.REWARD:
        _make_run(round_, "ppo", input_model=round_.policy, reward_model=run.output_model, by=by,
                  enqueue_it=enqueue_it)  # fmt: skip
        return _move(round_, St.PPO)
    if stage in (St.PPO, St.DPO):
        if round_.config.get("evaluate") and evaluation_prompts(round_.project).exists():
            _start_evaluation(round_, by=by, enqueue_it=enqueue_it)
            return _move(round_, St.EVALUATE)
        return _finish(round_, by=by, enqueue_it=enqueue_it)
    return False


def sample_mix(policy: ModelVersion, config: dict) -> dict:
    """The sample run's `mix_model` from the round's `sample_mix`: the base or SFT model up the
    policy's lineage writes part of each ranking task's replies ({}: none)."""
    kind = config["sample_mix"]
    if not kind:
        return {}
    mix = ancestor(policy, kind)
    if mix is None:
        raise Invalid(f"sample_mix is {kind}, but {policy.name} descends from no {kind} model.")
    if mix == policy:
        raise Invalid(f"sample_mix is {kind}, but the round samples from {policy.name}, that "
                      f"model itself: mix in the base model, or start from a policy.")  # fmt: skip
    return {"mix_model": mix.pk}


def reward_source(round_: Round) -> ModelVersion:
    """The model the round's reward model starts from (`config["reward_init"]`)."""
    if round_.config.get("reward_init") == "base":
        return ancestor(round_.policy, ModelVersion.Kind.BASE)
    return sft_ancestor(round_.policy) or round_.policy


def _finish(round_: Round, *, by, enqueue_it: bool) -> bool:
    _move(round_, St.DONE, finished_at=timezone.now())
    if round_.config.get("chain", True):
        transaction.on_commit(lambda: _start_next(round_, by=by, enqueue_it=enqueue_it))
    return False


def _start_evaluation(round_: Round, *, by, enqueue_it: bool) -> None:
    """The new policy against the policy the round started from and their SFT model, on the
    evaluation prompts, replies scored by the round's reward model; made once (its token)."""
    policy = round_.policy_run.output_model
    versions = [policy, round_.policy]
    anchor = sft_ancestor(round_.policy)
    if anchor is not None and anchor.pk != round_.policy_id:
        versions.append(anchor)
    round_.comparison = comparison_start(
        project=round_.project, versions=versions, config=_sampling(round_.config),
        preset=round_.config.get("preset", "tiny"),
        reward_model=round_.reward_run.output_model if round_.reward_run else None,
        created_by=by or round_.created_by, request_token=f"round-{round_.pk}-evaluate",
        enqueue_it=enqueue_it,
    )  # fmt: skip
    round_.save(update_fields=["comparison"])


def _sampling(config: dict) -> dict:
    """The round's sampling settings that also suit its evaluation replies."""
    sample = config.get("sample", {})
    return {k: sample[k] for k in ("max_new_tokens", "temperature", "top_k", "top_p", "seed")
            if k in sample}  # fmt: skip


def _start_next(round_: Round, *, by, enqueue_it: bool) -> None:
    try:
        round_start(project=round_.project, policy=round_.policy_run.output_model,
                    config=round_.config, rankings_needed=round_.rankings_needed, created_by=by,
                    enqueue_it=enqueue_it)  # fmt: skip
    except Conflict:
        pass  # someone opened it already


def _move(round_: Round, stage: str, **fields) -> bool:
    round_.stage = stage
    for name, value in fields.items():
        setattr(round_, name, value)
    round_.save(update_fields=["stage", *fields])
    return True


def _make_run(
    round_: Round, kind: str, *, by=None, enqueue_it: bool, resolved: dict | None = None,
    **models,
) -> TrainingRun:  # fmt: skip
    """The stage's run, made once (its request token names the round and stage) and handed to a
    worker after the round's transaction commits. `resolved`: settings the round works out for
    this run beside its stage's config (the sample run's mix_model)."""
    run = run_create(
        kind=kind, project=round_.project,
        config={**round_.config.get(kind, {}), **(resolved or {})},
        preset=round_.config.get("preset", "tiny"), created_by=by or round_.created_by,
        request_token=f"round-{round_.pk}-{kind}", enqueue_it=False, **models,
    )  # fmt: skip
    setattr(round_, f"{kind}_run", run)
    round_.save(update_fields=[f"{kind}_run"])
    if enqueue_it and run.status == S.QUEUED:
        transaction.on_commit(lambda: run_enqueue(run))
    return run


def round_rankings(round_: Round) -> tuple[int, int]:
    """(ranked tasks, needed) of the tasks the round's sample run pushed."""
    [row] = rounds_for_project(project=round_.project, only=round_.pk)
    return row.ranked, max(row.needed, 1)


def rounds_after_run(*, run_id: int) -> Round | None:
    """Called when a run finishes: the open round it belongs to is moved on."""
    for kind in STAGE_KINDS:
        round_ = Round.objects.exclude(stage=St.DONE).filter(**{f"{kind}_run_id": run_id}).first()
        if round_ is not None:
            return round_advance(round_id=round_.pk)
    for round_ in Round.objects.filter(stage=St.EVALUATE).select_related("comparison"):
        if run_id in round_.comparison.run_ids.values():
            return round_advance(round_id=round_.pk)
    return None


def rounds_advance_waiting(*, enqueue_it: bool = True) -> list[Round]:
    """Every round waiting for rankings, moved on if they are in (the periodic task
    `training.continue_waiting_rounds`, every minute, and `continue_round --waiting`): rounds
    go on by themselves once people have ranked their tasks, nobody has to press a button."""
    waiting = Round.objects.filter(stage=St.RANKING).values_list("pk", "project__slug", "number")
    moved = []
    for pk, project, number in waiting:
        try:
            moved.append(round_advance(round_id=pk, enqueue_it=enqueue_it))
        except Invalid as exc:
            # Its data cannot make the next run yet (every ranked task tied, say): it waits for
            # more rankings, and one round that cannot move does not hold up the others. The
            # "continue round" button gives the admin who presses it the same reason.
            logger.warning("round %s of %s waits: %s", number, project, exc)
    return moved


def round_continue(
    *, project, by=None, enqueue_it: bool = True, evaluate: bool | None = None,
    method: str | None = None, chat_comparisons=None, sample_mix: str | None = None,
) -> Round:  # fmt: skip
    """The "continue round" button: the open round moved on (its failed run resumed), or, with
    none open, a new round from the newest policy with the last round's settings (`evaluate`,
    when given, says whether it ends with a human evaluation; `method` its policy step;
    `chat_comparisons` how many chat messages it turns into ranking tasks; `sample_mix` whose
    replies join the policy's in its ranking tasks, "" for none)."""
    open_round = Round.objects.filter(project=project).exclude(stage=St.DONE).first()
    if open_round is not None:
        run = open_round.current_run
        resume = run is not None and run.status in (S.FAILED, S.CANCELLED)
        return round_advance(round_id=open_round.pk, resume=resume, by=by, enqueue_it=enqueue_it)
    last = Round.objects.filter(project=project).order_by("-number").first()
    config = last.config if last else {"preset": suggested_preset(project=project)}
    if evaluate is not None:
        config = {**config, "evaluate": evaluate}
    if method is not None:
        config = {**config, "method": method}
    if chat_comparisons is not None:
        config = {**config, "chat_comparisons": chat_comparisons}
    if sample_mix is not None:
        config = {**config, "sample_mix": sample_mix}
    return round_start(
        project=project,
        policy=last.policy_run.output_model if last and last.policy_run else None,
        config=config,
        rankings_needed=last.rankings_needed if last else 0,
        created_by=by,
        enqueue_it=enqueue_it,
    )


def _clean(config: dict) -> dict:
    """Each stage's settings checked now (not when the stage comes, hours later)."""
    preset = config.get("preset", "tiny")
    out = {"preset": preset, "chain": bool(config.get("chain", True)),
           "evaluate": bool(config.get("evaluate", False)),
           "reward_init": config.get("reward_init", "sft"), "method": config.get("method", "ppo"),
           "sample_mix": config.get("sample_mix") or ""}
    try:
        out["chat_comparisons"] = int(config.get("chat_comparisons") or 0)
    except (TypeError, ValueError):
        out["chat_comparisons"] = -1
    if not 0 <= out["chat_comparisons"] <= MAX_PER_REQUEST:
        raise Invalid(f"chat_comparisons must be a whole number from 0 to {MAX_PER_REQUEST}; "
                      f"got {str(config.get('chat_comparisons'))[:40]!r}.")  # fmt: skip
    if out["method"] not in METHODS:
        raise Invalid(f"method must be one of {', '.join(METHODS)}; "
                      f"got {str(out['method'])[:40]!r}.")  # fmt: skip
    if out["reward_init"] not in REWARD_INIT:
        raise Invalid(f"reward_init must be one of {', '.join(REWARD_INIT)}; "
                      f"got {str(out['reward_init'])[:40]!r}.")  # fmt: skip
    if out["sample_mix"] not in SAMPLE_MIX:
        raise Invalid(f"sample_mix must be one of {', '.join(SAMPLE_MIX[1:])} or empty; "
                      f"got {str(out['sample_mix'])[:40]!r}.")  # fmt: skip
    for kind in STAGE_KINDS:
        out[kind] = presets.clean_config(kind, config.get(kind) or {}, preset=preset)
    return out

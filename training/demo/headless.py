"""The headless demo's simulated labelers and its evaluation (used by `manage.py run_demo_round`
and `bench/bench_round.py`); what they prefer is in `training.demo.rules`, how consistently they
follow it in `training.demo.labelers`."""

from dataclasses import dataclass, replace

import torch

from labeling.models import Demonstration, RankingTask
from labeling.services.evaluation_prompts import prompts_mark_evaluation
from labeling.services.queue import ranking_claim_next
from labeling.services.rankings import ranking_submit
from training.demo.labelers import SimulatedLabeler
from training.demo.rules import Preference, reference_name
from training.jobs.common import load_version
from training.ml.best_of_n import best_of_n
from training.ml.ppo_rollout import reply_kl
from training.ml.reward import RewardModelScorer
from training.ml.sampling import SampleConfig, generate


def function_names(project) -> dict[int, str]:
    """{prompt id: the function its reference answer names}, for prompts that have one."""
    names = {}
    for prompt_id, turns in Demonstration.objects.filter(prompt__project=project).values_list(
        "prompt_id", "turns"
    ):
        if name := reference_name(turns[-1]["content"]):
            names.setdefault(prompt_id, name)
    return names


def hold_out(project, rows: list[dict]) -> int:
    """The project's prompts that ask a held-out demo row's question (`training.demo.split`)
    marked as evaluation prompts: no SFT, reward or PPO run trains on them, PPO reports its
    reward on them, and the demo's held-out figures are theirs. Returns how many changed."""
    questions = {row["prompt"] for row in rows}
    ids = [pk for pk, turns in project.prompts.values_list("pk", "turns")
           if turns[-1]["content"] in questions]  # fmt: skip
    return prompts_mark_evaluation(project=project, prompt_ids=ids) if ids else 0


def questions(project, *, evaluation: bool, limit: int | None = None) -> list[tuple[int, list]]:
    """[(prompt id, turns)] of the project's training prompts or of its evaluation prompts,
    oldest first."""
    qs = project.prompts.filter(duplicate_of__isnull=True, is_evaluation=evaluation)
    return list(qs.order_by("id").values_list("id", "turns")[:limit])


def simulate_labelers(
    project, labelers: dict[object, SimulatedLabeler], *, names: dict[int, str]
) -> int:
    """Each simulated labeler ({user: SimulatedLabeler}) claims and ranks tasks until none is left
    for them (through the same services as the browser). Returns the number of rankings."""
    submitted = 0
    for labeler, simulated in labelers.items():
        while (assignment := ranking_claim_next(labeler=labeler, project=project)) is not None:
            task: RankingTask = assignment.task
            completions = [
                i.completion for i in task.items.select_related("completion").order_by("position")
            ]
            order = simulated.rank(completions, names.get(task.prompt_id))
            ranking_submit(assignment_id=assignment.pk, labeler=labeler, order=order)
            submitted += 1
    return submitted


@dataclass
class Evaluation:
    prompts: int
    rule_rate_before: float  # share of SFT replies that fully follow the rule
    rule_rate_after: float  # share of the new policy's
    win_rate: float  # policy over SFT under the rule (a tie counts half)
    # the win rate of a policy whose every reply follows the rule: where SFT already does, a
    # tie (half), so 0.5 + (1 - rule_rate_before) / 2 for a two-level rule, whatever PPO does
    win_rate_ceiling: float
    # mean reward-model score of the SFT replies; None (and no best-of-n) without a reward
    # model: a DPO round trains none
    reward_before: float | None
    reward_after: float | None
    # KL to SFT per reply on the policy's replies (`training.ml.ppo_rollout.reply_kl`): what
    # the win rate cost, measured alike for PPO and DPO
    kl: float
    examples: list[tuple[str, str, str]]  # (question, SFT reply, policy reply), the first few
    best_of: int  # n of the best-of-n baseline: n SFT replies, the reward model keeps one
    rule_rate_best_of: float | None
    win_rate_best_of: float | None  # best-of-n over SFT under the rule: what PPO has to beat
    reward_best_of: float | None


def evaluate(*, sft, policy, reward_model=None, **settings) -> Evaluation:
    """`evaluate_models` on the versions `sft`, `policy` and `reward_model` (None: no reward
    model, so no best-of-n); `settings` are its keyword arguments."""
    sft_model, tokenizer = load_version(sft)
    policy_model, _ = load_version(policy)
    scorer = None
    if reward_model is not None:
        rm, _ = load_version(reward_model)
        scorer = RewardModelScorer(rm, pad_id=tokenizer.pad_id)
    return evaluate_models(sft_model, policy_model, tokenizer, scorer=scorer, **settings)


@torch.no_grad()
def evaluate_models(
    sft_model,
    policy_model,
    tokenizer,
    *,
    scorer: RewardModelScorer | None,
    prompts: list[tuple[int, list]],
    rule: Preference,
    names,
    max_new_tokens=32,
    temperature=0.7,
    seed=1234,
    examples=3,
    best_of=4,
) -> Evaluation:
    """One reply per prompt from the SFT model and from the policy (same seed), and the best of
    `best_of` further SFT replies by the reward model (`training.ml.best_of_n`), compared with
    the SFT reply under the rule and scored by the reward model (when there is one). The models
    are loaded ones: also a policy still training (`bench/bench_dpo_selection.py` evaluates
    DPO's weights at each of its held-out evaluations)."""
    limit = sft_model.config.block_size - max_new_tokens
    rows = [(pid, tokenizer.render_prompt(turns)) for pid, turns in prompts]
    rows = [(pid, ids) for pid, ids in rows if len(ids) <= limit and names.get(pid)]
    config = SampleConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    ids = [ids for _, ids in rows]
    stop = {"stop_id": tokenizer.end_id, "pad_id": tokenizer.pad_id}
    responses = {
        label: generate(model, ids, config, **stop).responses
        for label, model in (("sft", sft_model), ("policy", policy_model))
    }
    if scorer is not None:
        responses["best_of"] = best_of_n(sft_model, ids, replace(config, seed=seed + 1),
                                         n=best_of, score=scorer.score_batch,
                                         **stop).responses  # fmt: skip
    kl = reply_kl(policy_model, sft_model, ids, responses["policy"], temperature=temperature,
                  pad_id=tokenizer.pad_id, end_id=tokenizer.end_id).mean().item() if ids else 0.0
    n = max(len(rows), 1)
    results = {}
    for label, replies in responses.items():
        texts = [tokenizer.decode(r) for r in replies]
        reward = sum(scorer.score_batch(ids, replies)) / n if scorer is not None else None
        hits = [rule.score(t, names[pid]) for t, (pid, _) in zip(texts, rows, strict=True)]
        results[label] = (hits, reward, texts)
    before, r_before, sft_texts = results["sft"]
    after, r_after, policy_texts = results["policy"]
    best, r_best, _ = results.get("best_of", (None, None, None))
    questions = dict(prompts)
    return Evaluation(
        prompts=len(rows), rule_rate_before=before.count(rule.top) / n,
        rule_rate_after=after.count(rule.top) / n, win_rate=win_rate(after, before),
        win_rate_ceiling=win_rate([rule.top] * len(before), before),
        reward_before=r_before, reward_after=r_after,
        kl=kl,
        examples=[(questions[pid][-1]["content"], a, b) for (pid, _), a, b
                  in zip(rows[:examples], sft_texts, policy_texts, strict=False)],
        best_of=best_of, rule_rate_best_of=None if best is None else best.count(rule.top) / n,
        win_rate_best_of=None if best is None else win_rate(best, before),
        reward_best_of=r_best,
    )  # fmt: skip


def win_rate(scores: list[int], against: list[int]) -> float:
    """Share of prompts where the first reply scores higher under the rule, a tie counting half."""
    wins = sum((a > b) + 0.5 * (a == b) for a, b in zip(scores, against, strict=True))
    return wins / max(len(scores), 1)


def evaluation_table(rule: Preference, columns: dict[str, Evaluation | None]) -> list[str]:
    """The evaluation as a table, one column per prompt set ("-" where a set was empty): how
    often SFT, the policy and best-of-n follow the rule, their win rates over SFT and rewards."""
    width = 20

    def row(label, figure):
        cells = [figure(e) if e else "-" for e in columns.values()]
        return f"  {label:<34}" + "".join(f"{c:>{width}}" for c in cells)

    def share(value):
        return "-" if value is None else f"{value:.0%}"

    def reward(value):
        return "-" if value is None else f"{value:+.3f}"

    best_of = next((e.best_of for e in columns.values() if e), 0)
    n = f"best of {best_of} SFT replies by the RM"
    return [
        f"  {'':<34}" + "".join(f"{title:>{width}}" for title in columns),
        row("prompts evaluated", lambda e: str(e.prompts)),
        f"  replies that {rule.best}:",
        row("  SFT", lambda e: f"{e.rule_rate_before:.0%}"),
        row("  policy", lambda e: f"{e.rule_rate_after:.0%}"),
        row(f"  {n}", lambda e: share(e.rule_rate_best_of)),
        "  win rate over SFT (ties count half):",
        row("  policy", lambda e: f"{e.win_rate:.0%}"),
        row(f"  {n}", lambda e: share(e.win_rate_best_of)),
        row("  ceiling (every reply follows it)", lambda e: f"{e.win_rate_ceiling:.0%}"),
        row("KL to SFT per policy reply (nats)", lambda e: f"{e.kl:.2f}"),
        "  mean reward-model score:",
        row("  SFT", lambda e: reward(e.reward_before)),
        row("  policy", lambda e: reward(e.reward_after)),
        row(f"  {n}", lambda e: reward(e.reward_best_of)),
    ]

"""The headless demo's simulated labelers and its evaluation (used by `manage.py run_demo_round`
and `bench/bench_round.py`); what they prefer is in `training.demo_rules`, how consistently they
follow it in `training.demo_labelers`."""

import re
from dataclasses import dataclass, replace

import torch

from labeling.models import Demonstration, RankingTask
from labeling.services.queue import ranking_claim_next
from labeling.services.rankings import ranking_submit
from training.demo_labelers import SimulatedLabeler
from training.demo_rules import Preference
from training.jobs.common import load_version
from training.ml.best_of_n import best_of_n
from training.ml.reward import RewardModelScorer
from training.ml.sampling import SampleConfig, generate

DOTTED = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+\b")


def function_names(project) -> dict[int, str]:
    """{prompt id: the function its reference answer names}, for prompts that have one."""
    names = {}
    for prompt_id, turns in Demonstration.objects.filter(prompt__project=project).values_list(
        "prompt_id", "turns"
    ):
        if match := DOTTED.search(turns[-1]["content"]):
            names.setdefault(prompt_id, match.group(0).rstrip("."))
    return names


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
    reward_before: float  # mean reward-model score of the SFT replies
    reward_after: float
    examples: list[tuple[str, str, str]]  # (question, SFT reply, policy reply), the first few
    best_of: int  # n of the best-of-n baseline: n SFT replies, the reward model keeps one
    rule_rate_best_of: float
    win_rate_best_of: float  # best-of-n over SFT under the rule: what PPO has to beat
    reward_best_of: float


@torch.no_grad()
def evaluate(
    *,
    sft,
    policy,
    reward_model,
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
    the SFT reply under the rule and scored by the reward model."""
    sft_model, tokenizer = load_version(sft)
    policy_model, _ = load_version(policy)
    rm, _ = load_version(reward_model)
    scorer = RewardModelScorer(rm, pad_id=tokenizer.pad_id)
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
    responses["best_of"] = best_of_n(sft_model, ids, replace(config, seed=seed + 1), n=best_of,
                                     score=scorer.score_batch, **stop).responses  # fmt: skip
    results = {}
    for label, replies in responses.items():
        texts = [tokenizer.decode(r) for r in replies]
        scores = scorer.score_batch(ids, replies)
        hits = [rule.score(t, names[pid]) for t, (pid, _) in zip(texts, rows, strict=True)]
        results[label] = (hits, scores, texts)
    n = max(len(rows), 1)
    before, r_before, sft_texts = results["sft"]
    after, r_after, policy_texts = results["policy"]
    best, r_best, _ = results["best_of"]
    questions = dict(prompts)
    return Evaluation(
        prompts=len(rows), rule_rate_before=before.count(rule.top) / n,
        rule_rate_after=after.count(rule.top) / n, win_rate=win_rate(after, before),
        reward_before=sum(r_before) / n, reward_after=sum(r_after) / n,
        examples=[(questions[pid][-1]["content"], a, b) for (pid, _), a, b
                  in zip(rows[:examples], sft_texts, policy_texts, strict=False)],
        best_of=best_of, rule_rate_best_of=best.count(rule.top) / n,
        win_rate_best_of=win_rate(best, before), reward_best_of=sum(r_best) / n,
    )  # fmt: skip


def win_rate(scores: list[int], against: list[int]) -> float:
    """Share of prompts where the first reply scores higher under the rule, a tie counting half."""
    wins = sum((a > b) + 0.5 * (a == b) for a, b in zip(scores, against, strict=True))
    return wins / max(len(scores), 1)

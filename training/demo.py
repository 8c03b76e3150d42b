"""The headless demo's simulated labelers and its evaluation (used by `manage.py run_demo_round`
and `bench/bench_round.py`); what they prefer is in `training.demo_rules`, how consistently they
follow it in `training.demo_labelers`."""

import re
from dataclasses import dataclass

import torch

from labeling.models import Demonstration, RankingTask
from labeling.services.queue import ranking_claim_next
from labeling.services.rankings import ranking_submit
from training.demo_labelers import SimulatedLabeler
from training.demo_rules import Preference
from training.jobs.common import load_version
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
) -> Evaluation:
    """One reply per prompt from the SFT model and from the policy (same seed), compared under
    the rule and scored by the reward model."""
    sft_model, tokenizer = load_version(sft)
    policy_model, _ = load_version(policy)
    rm, _ = load_version(reward_model)
    scorer = RewardModelScorer(rm, pad_id=tokenizer.pad_id)
    limit = sft_model.config.block_size - max_new_tokens
    rows = [(pid, tokenizer.render_prompt(turns)) for pid, turns in prompts]
    rows = [(pid, ids) for pid, ids in rows if len(ids) <= limit and names.get(pid)]
    config = SampleConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    ids = [ids for _, ids in rows]
    results = {}
    for label, model in (("sft", sft_model), ("policy", policy_model)):
        samples = generate(model, ids, config, stop_id=tokenizer.end_id, pad_id=tokenizer.pad_id)
        texts = [tokenizer.decode(r) for r in samples.responses]
        scores = scorer.score_batch(ids, samples.responses)
        hits = [rule.score(t, names[pid]) for t, (pid, _) in zip(texts, rows, strict=True)]
        results[label] = (hits, scores, texts)
    n = max(len(rows), 1)
    before, r_before, sft_texts = results["sft"]
    after, r_after, policy_texts = results["policy"]
    questions = dict(prompts)
    wins = sum((a > b) + 0.5 * (a == b) for a, b in zip(after, before, strict=True))
    return Evaluation(
        prompts=len(rows), rule_rate_before=before.count(rule.top) / n,
        rule_rate_after=after.count(rule.top) / n, win_rate=wins / n,
        reward_before=sum(r_before) / n, reward_after=sum(r_after) / n,
        examples=[(questions[pid][-1]["content"], a, b) for (pid, _), a, b
                  in zip(rows[:examples], sft_texts, policy_texts, strict=False)],
    )  # fmt: skip

"""The headless demo's simulated labelers and its evaluation (used by `manage.py run_demo_round`
and `bench/bench_round.py`).

The rule the simulated labelers follow, visible and simple: **a reply that names the function
the question is about is better than one that only names its module, which is better than one
that names neither** (the function is the dotted name in the prompt's reference answer, e.g.
`os.writev`, its module `os`); replies alike under the rule are tied.
"""

import re
from dataclasses import dataclass

import torch

from labeling.models import Demonstration, RankingTask
from labeling.services.queue import ranking_claim_next
from labeling.services.rankings import ranking_submit
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


def rule_score(reply: str, name: str | None) -> int:
    """2: names the function; 1: names its module; 0: neither."""
    if not name:
        return 0
    if name in reply:
        return 2
    module = name.rsplit(".", 1)[0]
    return 1 if re.search(rf"\b{re.escape(module)}\b", reply) else 0


def rule_order(completions, name: str | None) -> list[list[int]]:
    """Groups of completion ids, best first, by `rule_score`; equal scores are a tie."""
    groups = {}
    for c in completions:
        groups.setdefault(rule_score(c.text, name), []).append(c.pk)
    return [groups[score] for score in sorted(groups, reverse=True)]


def simulate_labelers(project, labelers, *, names: dict[int, str]) -> int:
    """Each simulated labeler claims and ranks tasks by the rule until none is left for them
    (through the same services as the browser). Returns the number of rankings."""
    submitted = 0
    for labeler in labelers:
        while (assignment := ranking_claim_next(labeler=labeler, project=project)) is not None:
            task: RankingTask = assignment.task
            completions = [
                i.completion for i in task.items.select_related("completion").order_by("position")
            ]
            ranking_submit(assignment_id=assignment.pk, labeler=labeler,
                           order=rule_order(completions, names.get(task.prompt_id)))  # fmt: skip
            submitted += 1
    return submitted


@dataclass
class Evaluation:
    prompts: int
    rule_rate_before: float  # share of SFT replies that name the function
    rule_rate_after: float  # share of the new policy's
    module_rate_before: float  # share that name at least its module
    module_rate_after: float
    win_rate: float  # policy over SFT under the rule (a tie counts half)
    reward_before: float  # mean reward-model score of the SFT replies
    reward_after: float


@torch.no_grad()
def evaluate(
    *,
    sft,
    policy,
    reward_model,
    prompts: list[tuple[int, list]],
    names,
    max_new_tokens=32,
    temperature=0.7,
    seed=1234,
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
        hits = [rule_score(t, names[pid]) for t, (pid, _) in zip(texts, rows, strict=True)]
        results[label] = (hits, scores)
    n = max(len(rows), 1)
    (before, r_before), (after, r_after) = results["sft"], results["policy"]
    wins = sum((a > b) + 0.5 * (a == b) for a, b in zip(after, before, strict=True))
    return Evaluation(
        prompts=len(rows), rule_rate_before=before.count(2) / n, rule_rate_after=after.count(2) / n,
        module_rate_before=sum(h > 0 for h in before) / n,
        module_rate_after=sum(h > 0 for h in after) / n,
        win_rate=wins / n, reward_before=sum(r_before) / n, reward_after=sum(r_after) / n,
    )  # fmt: skip

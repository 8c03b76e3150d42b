"""Best-of-n sampling: n replies per prompt from a model, keep the one the reward model scores
highest (the rejection sampling of Llama 2, Touvron et al. 2023, section 3.2.3).

It is the baseline a PPO result is reported against: what the reward model buys with no update
of the policy at all, at n times the sampling cost. A PPO policy that does not beat best-of-n
from its own starting point has spent its KL budget for nothing; one that beats best-of-n on the
reward model's score but not under the labelers' preference has found the reward model's holes.

    best = best_of_n(sft_model, prompts, SampleConfig(max_new_tokens=32, temperature=0.7),
                     n=4, score=RewardModelScorer(rm, pad_id=tok.pad_id).score_batch,
                     stop_id=tok.end_id, pad_id=tok.pad_id)
    best.responses[i], best.scores[i]   # prompt i's kept reply and its reward
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

from training.ml.architectures import LanguageModel
from training.ml.sampling import SampleConfig, generate

# (prompts, responses) -> one score per pair, e.g. `RewardModelScorer.score_batch`
ScoreBatch = Callable[[list[list[int]], list[list[int]]], list[float]]


@dataclass
class BestOfN:
    responses: list[list[int]]  # per prompt, the kept reply
    scores: list[float]  # its score
    mean_score_of_all: float  # the mean over all n * prompts samples: what one sample gets


def best_of_n(
    model: LanguageModel,
    prompts: list[list[int]],
    config: SampleConfig,
    *,
    n: int,
    score: ScoreBatch,
    stop_id: int,
    pad_id: int,
) -> BestOfN:
    """Sample `n` replies per prompt (`config.num_samples` is replaced by `n`), score each with
    `score` and keep the highest of each prompt's (the first one on a tie)."""
    if n < 1:
        raise ValueError(f"n must be at least 1; got {n}")
    samples = generate(model, prompts, replace(config, num_samples=n), stop_id=stop_id,
                       pad_id=pad_id)  # fmt: skip
    scores = score([prompts[i] for i in samples.prompt_index], samples.responses)
    kept = [max(range(i * n, (i + 1) * n), key=scores.__getitem__) for i in range(len(prompts))]
    return BestOfN(
        responses=[samples.responses[row] for row in kept],
        scores=[scores[row] for row in kept],
        mean_score_of_all=sum(scores) / max(len(scores), 1),
    )

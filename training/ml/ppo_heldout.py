"""PPO's held-out evaluation: the reward on prompts PPO never trains on, and the weights of the
iteration where it was best.

PPO's own score rises on its training prompts whether or not the policy improves on questions
it never saw, and a policy pushed further against a reward model ends up exploiting it (Gao et
al. 2022, "Scaling laws for reward model overoptimization"). So, given held-out prompts,
`train_ppo` samples one reply for each of the first `eval_prompts` of them every `eval_every`
iterations (0: never between) and after the last iteration, with the same seed each time so
that two evaluations differ only by the policy; it scores them like the training replies
(cut-off replies get the unfinished penalty, scores clipped) and records `heldout_score` and
`heldout_kl` (KL to the reference per reply on those replies). `kl_budget` (in
`training.ml.ppo`) stops the run once the KL passes it.

**Choosing weights on a validation slice, not on the evaluation prompts.** `keep_best` ends on
the evaluated weights with the highest `val_score`: the reward on `val_prompts` of the run's own
prompts, set aside by a seeded draw before training (`validation_split`) and never trained on.
The project's evaluation prompts are the ones its people then compare models on; weights chosen
by their reward would make that comparison optimistic (the choice has seen the test), so they
are reported beside, never chosen on. The best weights live in memory: a resumed run starts its
search afresh.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import torch

from training.ml import ppo_math as pm
from training.ml.architectures import LanguageModel
from training.ml.ppo_rollout import recompute, score_responses
from training.ml.sampling import SampleConfig, generate

if TYPE_CHECKING:
    from training.ml.ppo_trainer import PPOTrainer

HELD_OUT_SEED = 7_777  # one seed for every evaluation: the replies change only with the policy


def validation_split(
    ids: list[list[int]], wanted: int, *, seed: int
) -> tuple[list[list[int]], list[list[int]]]:
    """(training, validation) prompts: `wanted` of them drawn at random by `seed` for validation,
    but never more than a quarter, so that a small run still trains on most of its prompts."""
    count = min(wanted, len(ids) // 4)
    chosen = set(random.Random(seed).sample(range(len(ids)), count))
    return ([p for i, p in enumerate(ids) if i not in chosen],
            [p for i, p in enumerate(ids) if i in chosen])  # fmt: skip


@torch.no_grad()
def held_out_figures(
    trainer: PPOTrainer, model: LanguageModel, prompts: list[list[int]]
) -> dict[str, float]:
    """`model`'s mean `score` and `kl` to the reference per reply on `prompts` (token ids), one
    reply each, sampled as PPO samples but with a fixed seed; against an ensemble also its
    disagreement on those replies (`score_std`)."""
    c = trainer.config
    config = SampleConfig(max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_k=0,
                          top_p=1.0, seed=c.seed * 1_000_003 + HELD_OUT_SEED)  # fmt: skip
    samples = generate(model, prompts, config, stop_id=trainer.end_id, pad_id=trainer.pad_id)
    queries = [prompts[i] for i in samples.prompt_index]
    ro = recompute(model, trainer.reference, trainer.value_model, queries, samples.responses,
                   config=c, pad_id=trainer.pad_id, end_id=trainer.end_id)  # fmt: skip
    finished = pm.finished(ro.responses, ro.mask, end_id=trainer.end_id).tolist()
    scores = score_responses(trainer.scorer, queries, samples.responses, finished, config=c)
    kl = ((ro.logprobs - ro.ref_logprobs) * ro.mask).sum(1)
    return {"score": float(scores.mean()), "kl": float(kl.mean()), **trainer.scorer_figures()}


class BestIteration:
    """The weights of the evaluation with the highest validation score so far (the first of
    equal ones: the one closer to the reference), kept on the CPU."""

    def __init__(self, *, keep: bool):
        self.keep, self.iteration, self.score = keep, None, float("-inf")
        self.state: dict[str, torch.Tensor] = {}

    def consider(self, model: LanguageModel, iteration: int, score: float) -> None:
        if self.keep and score > self.score:
            self.iteration, self.score = iteration, score
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def restore(self, model: LanguageModel, iteration: int) -> bool:
        """Load the best weights into `model` when they are not the current iteration's."""
        if self.iteration is None or self.iteration == iteration:
            return False
        model.load_state_dict(self.state)
        return True

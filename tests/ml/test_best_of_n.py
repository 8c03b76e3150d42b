"""Best-of-n against a reward model: each prompt keeps the highest-scoring of its n samples,
which on average scores at least what one sample does; n = 1 is plain sampling."""

from dataclasses import replace

import pytest
import torch

from training.ml.best_of_n import best_of_n
from training.ml.gpt import GPT
from training.ml.reward import RewardModelScorer
from training.ml.sampling import SampleConfig, generate

PAD = 0
PROMPTS = [[5, 17, 3], [9, 2, 44, 8, 1, 30, 12], [7, 7, 21, 60, 3]]
CONFIG = SampleConfig(max_new_tokens=8, temperature=1.0, seed=5)


@pytest.fixture
def policy_and_scorer(make_model):
    reward_model = GPT.with_scalar_head(make_model(seed=1))
    with torch.no_grad():  # a random head, so replies score differently
        reward_model.score_head.weight.normal_(0, 1.0)
    return make_model(seed=0), RewardModelScorer(reward_model, pad_id=PAD)


def test_each_prompt_keeps_its_highest_scoring_sample(policy_and_scorer):
    policy, scorer = policy_and_scorer
    best = best_of_n(policy, PROMPTS, CONFIG, n=4, score=scorer.score_batch, stop_id=-1,
                     pad_id=PAD)  # fmt: skip
    samples = generate(policy, PROMPTS, replace(CONFIG, num_samples=4), stop_id=-1, pad_id=PAD)
    for i, prompt in enumerate(PROMPTS):
        candidates = samples.responses[4 * i : 4 * i + 4]
        scores = [scorer(prompt, reply) for reply in candidates]
        assert len(set(map(tuple, candidates))) > 1  # a real choice among different replies
        top = max(range(4), key=scores.__getitem__)
        assert best.responses[i] == candidates[top]
        assert best.scores[i] == pytest.approx(scores[top], abs=1e-5)
    assert sum(best.scores) / len(PROMPTS) > best.mean_score_of_all


def test_best_of_one_is_plain_sampling(policy_and_scorer):
    policy, scorer = policy_and_scorer
    best = best_of_n(policy, PROMPTS, CONFIG, n=1, score=scorer.score_batch, stop_id=-1,
                     pad_id=PAD)  # fmt: skip
    assert best.responses == generate(policy, PROMPTS, CONFIG, stop_id=-1, pad_id=PAD).responses
    with pytest.raises(ValueError, match="n must be at least 1"):
        best_of_n(policy, PROMPTS, CONFIG, n=0, score=scorer.score_batch, stop_id=-1, pad_id=PAD)

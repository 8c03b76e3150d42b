"""PPO end to end on tiny models: the index layout, ratio 1 and KL 0 at the start, the reward
rising under a KL budget, a large beta holding the policy near the reference, the KL budget,
skipped minibatches, cut-off penalties, PPO-ptx, EMA, reward models as rewards, stop and
resume."""

import copy
import random

import pytest
import torch
from tiny_text import docs_tokenizer

from training.ml import ppo_math as pm
from training.ml.gpt import GPT, GPTConfig
from training.ml.ppo import PPOConfig, PPOTrainer, train_ppo
from training.ml.ppo_heldout import validation_split
from training.ml.ppo_rollout import (
    pack,
    policy_outputs,
    prompt_ids,
    reply_kl,
    score_responses,
)
from training.ml.records import Demonstration
from training.ml.sampling import SampleConfig, generate
from training.ml.sft import SFTConfig, dialogue_examples, train_sft

tokenizer = docs_tokenizer


def tiny_gpt(seed=0):
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=tokenizer().vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32
    )
    return GPT(config)


def demonstrations(n=100, seed=0):
    """Questions answered with 3-5 words, each "yes" or "no" at random."""
    rng = random.Random(seed)
    return [
        Demonstration(
            [
                {"role": "user", "content": f"question {i}"},
                {
                    "role": "assistant",
                    "content": " ".join(
                        rng.choice(["yes", "no"]) for _ in range(rng.randint(3, 5))
                    ),
                },
            ]
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def sft_policy():
    """A tiny policy fine-tuned to answer with yes/no words and stop: about half the words are
    "yes" and most replies end with <|end|>."""
    model = tiny_gpt()
    train_sft(
        model,
        tokenizer(),
        demonstrations(),
        SFTConfig(epochs=25, batch_size=16, lr=3e-3, warmup_steps=5),
    )
    return model


def fresh(policy):
    return copy.deepcopy(policy)


def prompts(n=100):
    return [d.turns[:1] for d in demonstrations(n)]


def share_of_yes(prompt, response):
    """The hidden preference: the share of the reply's words that are "yes"."""
    words = tokenizer().decode(response).split()
    return sum(w == "yes" for w in words) / max(len(words), 1)


CONFIG = dict(
    prompts_per_iteration=16,
    samples_per_prompt=2,
    max_new_tokens=24,
    lr=1e-3,
    value_lr=1e-3,
    minibatch_size=8,
    ppo_epochs=4,
)


def test_packing_puts_each_response_token_after_its_own_prompt():
    tok, model = tokenizer(), tiny_gpt().eval()
    queries = [[tok.eot_id, 5, 6, 7], [tok.eot_id, 8]]
    responses = [[11, 12, tok.end_id], [13, 14, 15, 16, 17]]
    input_ids, positions, response_ids, mask = pack(
        queries, responses, pad_id=tok.pad_id, end_id=tok.end_id, device="cpu"
    )
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert positions[0, :3].tolist() == [3, 4, 5] and positions[1].tolist() == [1, 2, 3, 4, 5]
    with torch.no_grad():
        logprobs, _ = policy_outputs(model, input_ids, positions, response_ids, temperature=0.7)
        for row, (q, r) in enumerate(zip(queries, responses, strict=True)):
            logits, _ = model(torch.tensor([q + r]))  # the row alone, no padding
            alone = pm.token_logprobs(
                logits[:, len(q) - 1 : -1], torch.tensor([r]), temperature=0.7
            )
            assert torch.allclose(logprobs[row, : len(r)], alone[0], atol=1e-5)


def test_reply_kl_sums_the_log_ratio_over_each_reply_and_is_zero_to_itself(sft_policy):
    """The KL per reply the demo reports for any policy: log pi - log pi_ref summed over the
    tokens the policy sampled, each reference log-prob checked on its row alone."""
    tok, policy, reference = tokenizer(), fresh(sft_policy).eval(), tiny_gpt().eval()
    queries = [tok.render_prompt(turns) for turns in prompts(6)]
    config = SampleConfig(max_new_tokens=8, temperature=0.7, top_k=0, top_p=1.0, seed=0)
    samples = generate(policy, queries, config, stop_id=tok.end_id, pad_id=tok.pad_id)
    stop = dict(temperature=0.7, pad_id=tok.pad_id, end_id=tok.end_id, batch_size=4)
    kl = reply_kl(policy, reference, queries, samples.responses, **stop)
    for row, (q, r) in enumerate(zip(queries, samples.responses, strict=True)):
        with torch.no_grad():
            logits, _ = reference(torch.tensor([q + r]))
        ref = pm.token_logprobs(logits[:, len(q) - 1 : -1], torch.tensor([r]), temperature=0.7)
        expected = sum(samples.logprobs[row]) - ref.sum().item()
        assert kl[row].item() == pytest.approx(expected, abs=1e-3)
    assert kl.abs().sum() > 1  # two different models
    assert torch.equal(reply_kl(policy, policy, queries, samples.responses, **stop),
                       torch.zeros(len(queries)))  # fmt: skip


def test_ratio_is_exactly_one_at_the_first_minibatch_and_kl_starts_at_zero(sft_policy):
    result = train_ppo(
        fresh(sft_policy),
        tokenizer(),
        prompts(),
        PPOConfig(iterations=1, **CONFIG),
        reward=share_of_yes,
    )
    first = result.history[0]
    assert first["kl"] == 0.0
    assert first["first_ratio_error"] <= 1e-6
    assert first["skipped_minibatches"] == 0
    assert first["responses"] == 32 and 0 < first["end_rate"] <= 1


@pytest.fixture(scope="module")
def low_beta_run(sft_policy):
    reports = []
    config = PPOConfig(iterations=6, kl_coef=0.05, kl_budget=10.0, **CONFIG)
    result = train_ppo(
        fresh(sft_policy), tokenizer(), prompts(), config, reward=share_of_yes,
        on_step=reports.append,
    )  # fmt: skip
    return result, reports


def test_ppo_raises_the_reward_within_a_few_iterations_under_the_kl_budget(low_beta_run):
    result, reports = low_beta_run
    scores = [h["score"] for h in result.history]
    assert result.stop_reason is None and result.iteration == 6
    assert (scores[-1] + scores[-2]) / 2 > scores[0] + 0.3, scores
    assert all(h["kl"] < 10.0 for h in result.history)
    assert [p.step for p in reports] == [1, 2, 3, 4, 5, 6] and reports[0].stage == "ppo"
    for name in ("score", "kl", "entropy", "clip_frac", "approx_kl", "value_loss",
                 "response_length", "end_rate", "skipped_minibatches"):  # fmt: skip
        assert name in reports[-1].metrics


def test_a_large_beta_keeps_the_policy_close_to_the_reference(sft_policy, low_beta_run):
    free, _ = low_beta_run
    config = PPOConfig(iterations=6, kl_coef=10.0, **CONFIG)
    held = train_ppo(fresh(sft_policy), tokenizer(), prompts(), config, reward=share_of_yes)
    # The first update cannot feel beta (policy == reference, so the KL penalty is 0 and both
    # runs take the same step); from the next rollout on, beta pulls the policy back.
    assert max(h["kl"] for h in held.history[2:]) < 1.0
    assert held.history[-1]["kl"] < free.history[-1]["kl"] / 2
    assert held.history[-1]["score"] < free.history[-1]["score"]


def test_rollout_scores_the_last_real_token_and_nothing_after_it(sft_policy):
    tok = tokenizer()
    config = PPOConfig(kl_coef=0.1, **{**CONFIG, "max_new_tokens": 10})  # some replies cut off
    trainer = PPOTrainer(
        fresh(sft_policy), config, reward=share_of_yes, pad_id=tok.pad_id, end_id=tok.end_id
    )
    ids = [tok.render_prompt(p) for p in prompts(16)]
    with torch.no_grad():  # a policy that differs from the reference: KL terms are not 0
        for p in trainer.policy.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    ro, _ = trainer.rollout(ids, iteration=0)
    assert 0 < ro.finished.sum() < len(ro.finished)
    last = pm.last_index(ro.mask)
    rows = torch.arange(len(last))
    after = 1 - ro.mask
    for name in ("rewards", "kl", "advantages", "returns", "values", "logprobs", "ref_logprobs"):
        assert torch.all(getattr(ro, name) * after == 0), name
    expected_last = ro.scores - 0.1 * ro.kl[rows, last]
    assert torch.allclose(ro.rewards[rows, last], expected_last)
    assert torch.all(ro.responses[rows, last][ro.finished] == tok.end_id)
    assert torch.all(ro.scores[~ro.finished] == config.unfinished_penalty)
    assert torch.all(ro.mask.sum(1)[~ro.finished] == 10)  # cut off at max_new_tokens


def test_the_kl_budget_stops_the_run_with_a_reason(sft_policy):
    config = PPOConfig(iterations=10, kl_coef=0.0, kl_budget=0.3, **{**CONFIG, "lr": 3e-3})
    result = train_ppo(fresh(sft_policy), tokenizer(), prompts(), config, reward=share_of_yes)
    assert result.stopped and result.iteration < 10
    assert "exceeded the budget 0.3" in result.stop_reason
    assert result.history[-1]["kl"] > 0.3
    assert all(h["kl"] <= 0.3 for h in result.history[:-1])


def test_a_minibatch_whose_ratio_blows_up_is_skipped_and_counted(sft_policy):
    policy = fresh(sft_policy)
    before = copy.deepcopy(policy.state_dict())
    config = PPOConfig(iterations=1, ratio_threshold=0.5, **CONFIG)  # every ratio is ~1 > 0.5
    result = train_ppo(policy, tokenizer(), prompts(), config, reward=share_of_yes)
    assert result.history[0]["skipped_minibatches"] == 4 * 4  # 32 responses / 8, 4 epochs
    for name, value in policy.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_cut_off_responses_get_the_penalty_and_are_not_scored():
    seen = []

    def rule(prompt, response):
        seen.append(response)
        return 10.0

    queries, responses = [[1], [1], [1]], [[5, 9], [5, 6], [9]]
    config = PPOConfig(unfinished_penalty=-2.0, score_clip=4.0)
    scores = score_responses(rule, queries, responses, [True, False, True], config=config)
    assert scores.tolist() == [4.0, -2.0, 4.0]  # clipped to 4, the penalty for the cut-off one
    assert seen == [[5, 9], [9]]
    unpenalised = score_responses(
        rule,
        queries,
        responses,
        [True, False, True],
        config=PPOConfig(unfinished_penalty=None, score_clip=None),
    )
    assert unpenalised.tolist() == [10.0, 10.0, 10.0]
    with pytest.raises(FloatingPointError, match="non-finite"):
        score_responses(lambda p, r: float("nan"), queries, responses, [True] * 3, config=config)


def test_a_reward_model_scores_and_initialises_the_value_model(sft_policy):
    reward_model = GPT.with_scalar_head(sft_policy)
    with torch.no_grad():
        reward_model.score_head.weight.normal_(0, 0.5)
    kept = copy.deepcopy(reward_model.state_dict())
    frozen = PPOConfig(iterations=1, **{**CONFIG, "lr": 0.0, "value_lr": 0.0})
    result = train_ppo(fresh(sft_policy), tokenizer(), prompts(), frozen, reward=reward_model)
    assert result.value_model is not reward_model  # its own parameters ...
    for name, value in result.value_model.state_dict().items():  # ... copied from the RM
        assert torch.equal(value, kept[name]), name
    result = train_ppo(
        fresh(sft_policy),
        tokenizer(),
        prompts(),
        PPOConfig(iterations=2, **CONFIG),
        reward=reward_model,
    )
    assert result.history[0]["score"] != pytest.approx(-1.0)  # finished replies were scored
    for name, value in reward_model.state_dict().items():  # the reward model is left alone
        assert torch.equal(value, kept[name]), name
    assert not torch.equal(result.value_model.score_head.weight, reward_model.score_head.weight)


def test_batch_scorers_ptx_and_ema(sft_policy):
    class Batched:
        calls = 0

        def score_batch(self, prompts, responses):
            Batched.calls += 1
            return [share_of_yes(p, r) for p, r in zip(prompts, responses, strict=True)]

    tok = tokenizer()
    ptx, _ = dialogue_examples(tok, demonstrations(20), block_size=64)
    config = PPOConfig(iterations=2, ptx_coef=0.5, ema_decay=0.9, **CONFIG)
    policy = fresh(sft_policy)
    result = train_ppo(policy, tok, prompts(), config, reward=Batched(), ptx_examples=ptx)
    assert Batched.calls == 2
    assert result.history[-1]["ptx_loss"] > 0
    ema, start = result.ema.state_dict(), sft_policy.state_dict()
    moved = [n for n, v in policy.state_dict().items() if not torch.equal(v, ema[n])]
    assert moved and any(not torch.equal(ema[n], start[n]) for n in moved)
    with pytest.raises(ValueError, match="ptx_examples"):
        train_ppo(fresh(sft_policy), tok, prompts(), PPOConfig(ptx_coef=0.1), reward=share_of_yes)
    with pytest.raises(ValueError, match="no usable prompt"):
        train_ppo(fresh(sft_policy), tok, [], PPOConfig(), reward=share_of_yes)


def test_stop_and_resume_reach_the_uninterrupted_policy(sft_policy, tmp_path):
    config = PPOConfig(
        iterations=4,
        checkpoint_every=10,
        ema_decay=0.9,
        adaptive_kl=True,
        target_kl=0.5,
        kl_horizon=100,
        **CONFIG,
    )
    straight = train_ppo(fresh(sft_policy), tokenizer(), prompts(), config, reward=share_of_yes)
    stopped = train_ppo(
        fresh(sft_policy),
        tokenizer(),
        prompts(),
        config,
        reward=share_of_yes,
        checkpoint_dir=tmp_path,
        on_step=lambda p: p.step == 2,
    )
    assert (
        stopped.stopped
        and stopped.iteration == 2
        and stopped.stop_reason == "stopped by the caller"
    )
    resumed = train_ppo(
        fresh(sft_policy),
        tokenizer(),
        prompts(),
        config,
        reward=share_of_yes,
        checkpoint_dir=tmp_path,
    )
    assert resumed.iteration == 4 and not resumed.stopped and len(resumed.history) == 4
    assert [h["kl_coef"] for h in resumed.history] == [h["kl_coef"] for h in straight.history]
    for model_a, model_b in (
        (straight.policy, resumed.policy),
        (straight.value_model, resumed.value_model),
        (straight.ema, resumed.ema),
    ):
        for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
            assert torch.equal(a, b)


def held_out_prompts(n=24):
    return [[{"role": "user", "content": f"held-out question {i}"}] for i in range(n)]


def validation_texts(config):
    """The decoded prompts `train_ppo` sets aside for keep_best's validation reward."""
    limit = 64 - config.max_new_tokens
    ids, _ = prompt_ids(tokenizer(), prompts(), limit=limit)
    _, val = validation_split(ids, config.val_prompts, seed=config.seed)
    return {tokenizer().decode(p) for p in val}


def test_keep_best_chooses_on_a_validation_slice_of_the_training_prompts(sft_policy):
    """The validation slice wants "no" while the rest of the run's prompts and the held-out
    (evaluation) prompts want "yes": training raises the held-out reward, so choosing on it
    would keep the last weights; keep_best must choose on the validation reward instead, end on
    exactly that iteration's weights, and never train on the slice."""
    config = PPOConfig(iterations=6, eval_every=1, keep_best=True, val_prompts=12, **CONFIG)
    val, seen = validation_texts(config), []
    assert len(val) == 12

    def reward(prompt, response):
        text = tokenizer().decode(prompt)
        seen.append(text)
        words = tokenizer().decode(response).split()
        return sum(w == ("no" if text in val else "yes") for w in words) / max(len(words), 1)

    policy, weights = fresh(sft_policy), {}

    def remember(progress):  # the weights after each iteration, as the evaluation saw them
        weights[progress.step] = copy.deepcopy(policy.state_dict())

    result = train_ppo(policy, tokenizer(), prompts(), config, reward=reward,
                       held_out=held_out_prompts(), on_step=remember)  # fmt: skip
    val_scores = [h["val_score"] for h in result.history]
    held_scores = [h["heldout_score"] for h in result.history]
    assert result.history[-1]["val_prompts"] == 12 and all("val_kl" in h for h in result.history)
    assert result.history[-1]["score"] > result.history[0]["score"]  # training went on
    best = 1 + val_scores.index(max(val_scores))
    assert result.best_iteration == best and best < 6 and val_scores[-1] < max(val_scores)
    assert held_scores.index(max(held_scores)) + 1 != best  # the evaluation prompts did not choose
    kept = weights[best]
    assert all(torch.equal(v, kept[n]) for n, v in policy.state_dict().items())
    # each validation prompt was scored once per evaluation, never in a training batch
    assert sum(text in val for text in seen) == 12 * 6


def test_validation_split_is_seeded_and_keeps_three_quarters_for_training():
    ids = [[i] for i in range(40)]
    train, val = validation_split(ids, 16, seed=3)
    assert (len(train), len(val)) == (30, 10)  # at most a quarter
    assert sorted(train + val) == ids
    assert validation_split(ids, 16, seed=3) == (train, val)
    assert validation_split(ids, 16, seed=4)[1] != val
    assert validation_split(ids[:3], 16, seed=3) == (ids[:3], [])


def test_without_keep_best_the_held_out_reward_is_reported_after_the_last_iteration(sft_policy):
    policy = fresh(sft_policy)
    config = PPOConfig(iterations=3, **CONFIG)  # eval_every 0: after the last iteration only
    result = train_ppo(policy, tokenizer(), prompts(), config, reward=share_of_yes,
                       held_out=held_out_prompts())  # fmt: skip
    assert ["heldout_score" in h for h in result.history] == [False, False, True]
    assert result.best_iteration is None
    again = train_ppo(fresh(sft_policy), tokenizer(), prompts(), config,
                      reward=share_of_yes, held_out=held_out_prompts())  # fmt: skip
    assert again.history[-1]["heldout_score"] == result.history[-1]["heldout_score"]  # one seed


def test_the_kl_budget_stop_is_evaluated_and_keep_best_goes_back_before_it(sft_policy):
    config = PPOConfig(iterations=10, kl_coef=0.0, kl_budget=0.3, eval_every=1, keep_best=True,
                       **{**CONFIG, "lr": 3e-3})  # fmt: skip
    result = train_ppo(fresh(sft_policy), tokenizer(), prompts(), config, reward=share_of_yes,
                       held_out=held_out_prompts())  # fmt: skip
    assert result.stopped and "exceeded the budget" in result.stop_reason
    assert "heldout_score" in result.history[-1]
    assert result.best_iteration is not None and result.best_iteration <= result.iteration

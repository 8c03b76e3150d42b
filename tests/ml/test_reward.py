"""The reward model: the pairwise loss against the explicit pair sum, order invariance, pairs
from rankings with ties, K-grouped batches, bad input, and learning a hidden rule to >= 0.9
held-out accuracy with the bias then centred on the demonstrations."""

import copy
import itertools
import math
import random
from dataclasses import replace

import pytest
import torch
from tiny_text import docs_tokenizer

from training.ml.gpt import GPT, GPTConfig
from training.ml.records import (
    BadRecord,
    Demonstration,
    RankingRecord,
    ranking_pairs,
    split_by_prompt,
)
from training.ml.reward import (
    RewardConfig,
    RewardModelScorer,
    evaluate_rankings,
    pairwise_loss,
    score_sequences,
    sequence_scores,
    train_reward_model,
)
from training.ml.reward_data import ranking_examples, reward_batch

tokenizer = docs_tokenizer


def tiny_rm(seed=0):
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=tokenizer().vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32
    )
    model = GPT.with_scalar_head(GPT(config))
    with torch.no_grad():  # a random head, so scores differ between completions
        model.score_head.weight.normal_(0, 1.0)
    return model


def user(text):
    return [{"role": "user", "content": text}]


def test_pairs_from_rankings_with_ties():
    assert ranking_pairs([2, 0, 1], 3) == [(2, 0), (2, 1), (0, 1)]
    # 2 > 0 = 3 > 1: the tie 0 = 3 yields no pair
    assert sorted(ranking_pairs([2, [0, 3], 1], 4)) == sorted(
        [(2, 0), (2, 3), (2, 1), (0, 1), (3, 1)]
    )
    assert ranking_pairs([[0, 1, 2]], 3) == []


@pytest.mark.parametrize(
    "ranking", [[0, 1, 1], [0, 1], [0, 1, 3], [0, [1, 2], 2], [0, [], 1, 2], ["0", 1, 2]]
)
def test_a_ranking_that_is_not_an_ordering_is_rejected(ranking):
    with pytest.raises(BadRecord, match="ranking"):
        ranking_pairs(ranking, 3)


def test_pairwise_loss_equals_the_explicit_pair_sum():
    rewards = torch.tensor([0.3, -1.2, 2.0, 0.1, 0.5, -0.4, 1.5])
    # prompt 0: completions 0..2 ranked 2 > 0 > 1 (3 pairs); prompt 1: completions 3..6
    # ranked 6 > 4 > 3 > 5 (C(4, 2) = 6 pairs)
    groups_pairs = [
        [(2, 0), (2, 1), (0, 1)],
        [(6, 4), (6, 3), (6, 5), (4, 3), (4, 5), (3, 5)],
    ]
    explicit = 0.0
    for pairs in groups_pairs:
        explicit += -sum(
            math.log(1 / (1 + math.exp(-(rewards[win] - rewards[lose])))) for win, lose in pairs
        ) / len(pairs)
    explicit /= 2
    flat = [(win, lose, g) for g, pairs in enumerate(groups_pairs) for win, lose in pairs]
    winners, losers, groups = (torch.tensor(col) for col in zip(*flat, strict=True))
    assert float(pairwise_loss(rewards, winners, losers, groups, 2)) == pytest.approx(
        explicit, rel=1e-6
    )


def test_loss_does_not_depend_on_the_order_completions_are_listed_in():
    tok, model = tokenizer(), tiny_rm().eval()
    completions = ["a plain answer", "no", "a much longer and more careful answer", "maybe so"]
    record = RankingRecord(user("why?"), completions, [[2, [0, 3], 1], [2, 0, 3, 1]])
    perm = [3, 1, 0, 2]  # new position i holds old completion perm[i]
    old_to_new = {old: new for new, old in enumerate(perm)}

    def remap(ranking):
        return [
            old_to_new[x] if isinstance(x, int) else [old_to_new[y] for y in x] for x in ranking
        ]

    shuffled = RankingRecord(
        user("why?"), [completions[i] for i in perm], [remap(r) for r in record.rankings]
    )

    def loss_of(rec):
        examples, _ = ranking_examples(tok, [rec], block_size=64)
        batch = reward_batch(examples, pad_id=tok.pad_id, device="cpu")
        with torch.no_grad():
            rewards = sequence_scores(model, batch.idx, batch.last)
        return float(
            pairwise_loss(rewards, batch.winners, batch.losers, batch.groups, batch.num_groups)
        )

    assert loss_of(record) == pytest.approx(loss_of(shuffled), rel=1e-5)


def test_each_completion_goes_through_the_model_once_per_prompt():
    tok = tokenizer()
    records = [
        RankingRecord(user(f"q{k}"), [f"reply {i}" for i in range(k)], [list(range(k))])
        for k in (4, 5, 9)
    ]
    examples, _ = ranking_examples(tok, records, block_size=64)
    batch = reward_batch(examples, pad_id=tok.pad_id, device="cpu")
    assert batch.idx.shape[0] == 4 + 5 + 9  # rows: completions, not pairs
    assert len(batch.winners) == math.comb(4, 2) + math.comb(5, 2) + math.comb(9, 2)
    assert batch.groups.bincount().tolist() == [6, 10, 36]
    # each row is prompt + reply + <|end|>, scored at the <|end|>
    row = batch.idx[1, : batch.last[1] + 1].tolist()
    assert row == tok.render_prompt(user("q4")) + tok.render_reply("reply 1")
    assert row[-1] == tok.end_id


def test_records_without_pairs_are_skipped_and_counted_bad_rankings_raise():
    tok = tokenizer()
    good = RankingRecord(user("q"), ["a", "b", "c"], [[0, 1, 2]])
    one = RankingRecord(user("q1"), ["only"], [[0]])
    ties = RankingRecord(user("q2"), ["a", "b"], [[[0, 1]]])
    unranked = RankingRecord(user("q3"), ["a", "b"], [])
    bad = RankingRecord(user("q4"), ["a", "b", "c"], [[0, 0, 1]])
    examples, skipped = ranking_examples(tok, [good, one, ties, unranked], block_size=64)
    assert len(examples) == 1
    assert skipped == {"fewer_than_2_completions": 1, "only_ties": 1, "no_rankings": 1}
    with pytest.raises(
        BadRecord, match="record 1: ranking .* not an ordering of the 3 completions"
    ):
        train_reward_model(tiny_rm(), tok, [good, bad], RewardConfig())
    result = train_reward_model(
        tiny_rm(), tok, [good, bad, one], RewardConfig(skip_invalid=True, val_fraction=0)
    )
    assert result.metrics["skipped_records"] == 2 and result.metrics["skipped_invalid_ranking"] == 1
    with pytest.raises(ValueError, match="no usable ranking record"):
        train_reward_model(tiny_rm(), tok, [], RewardConfig())
    with pytest.raises(ValueError, match="no usable ranking record"):
        train_reward_model(tiny_rm(), tok, [one, ties], RewardConfig())


def test_a_nan_loss_is_a_clear_error():
    model = tiny_rm()
    with torch.no_grad():
        model.score_head.bias.fill_(float("nan"))
    record = RankingRecord(user("q"), ["a", "b"], [[0, 1]])
    with pytest.raises(FloatingPointError, match="reward-model loss is nan"):
        train_reward_model(model, tokenizer(), [record], RewardConfig())


def hidden_rule_data(n_prompts, seed=0):
    """Replies of 3-8 words, each "yes" or "no"; the hidden rule ranks by the share of "yes",
    equal shares tied. The share is independent of the length: "longer wins" is a coin flip."""
    rng = random.Random(seed)

    def completion():
        length = rng.randint(3, 8)
        n = rng.randint(0, length)
        words = ["yes"] * n + ["no"] * (length - n)
        rng.shuffle(words)
        return " ".join(words), n / length

    records = []
    for i in range(n_prompts):
        comps = [completion() for _ in range(4)]
        tiers = [
            [j for j in range(4) if comps[j][1] == share]
            for share in sorted({s for _, s in comps}, reverse=True)
        ]
        records.append(RankingRecord(user(f"question {i}"), [c for c, _ in comps], [tiers]))
    return records


def test_reward_model_learns_a_hidden_rule_to_90_percent_held_out():
    tok = tokenizer()
    records = hidden_rule_data(200)
    demos = [
        Demonstration(user(f"demo {i}") + [{"role": "assistant", "content": "yes no yes"}])
        for i in range(10)
    ]
    reports = []
    # rankings that take no part in training or in choosing weights (a project's evaluation
    # prompts): scored once at the end
    held_out = [replace(r, prompt=user(f"held-out {i}")) for i, r in
                enumerate(hidden_rule_data(30, seed=5))]  # fmt: skip
    config = RewardConfig(epochs=3, batch_size=8, lr=3e-3, val_fraction=0.2)
    result = train_reward_model(tiny_rm(), tok, records, config, demonstrations=demos,
                                held_out=held_out, on_step=reports.append)  # fmt: skip
    m = result.metrics
    assert m["val_prompts"] == 40 and m["val_pairs"] > 150
    assert m["val_accuracy"] >= 0.9
    assert m["heldout_prompts"] == 30 and m["heldout_accuracy"] >= 0.85
    examples, _ = ranking_examples(tok, held_out, block_size=64)
    again = evaluate_rankings(result.model, examples, pad_id=tok.pad_id, batch_size=8)
    assert m["heldout_accuracy"] == pytest.approx(again["accuracy"])  # the final weights'
    assert m["heldout_length_baseline_accuracy"] == again["length_baseline_accuracy"]
    assert m["val_length_baseline_accuracy"] < 0.7  # the rule is not "longer wins"
    assert m["val_mean_margin"] > 0.5
    assert reports[-1].stage == "reward" and reports[-1].step == result.total_steps == 60
    # the bias was shifted so the demonstrations' mean reward is 0
    scorer = RewardModelScorer(result.model, pad_id=tok.pad_id)
    prompts = [tok.render_prompt(d.turns[:1]) for d in demos]
    replies = [tok.render_reply(d.turns[1]["content"]) for d in demos]
    assert sum(scorer.score_batch(prompts, replies)) / len(demos) == pytest.approx(0.0, abs=1e-4)
    assert m["reward_offset"] != 0.0
    # the scorer PPO uses agrees with the training-time scores
    seq = prompts[0] + replies[0]
    assert scorer(prompts[0], replies[0]) == pytest.approx(
        float(score_sequences(result.model, [seq], pad_id=0)[0])
    )


def test_rewards_end_normalized_unit_spread_on_training_completions_and_zero_on_demos():
    """Ziegler et al.'s normalization: whatever scale training leaves the head at, PPO sees
    rewards whose spread over the policy's own samples is 1 and whose demonstrations mean 0."""
    tok, records = tokenizer(), hidden_rule_data(40, seed=2)
    demos = [
        Demonstration(user(f"demo {i}") + [{"role": "assistant", "content": "no yes"}])
        for i in range(6)
    ]
    config = RewardConfig(epochs=2, batch_size=8, lr=3e-3, val_fraction=0.0)
    result = train_reward_model(tiny_rm(), tok, records, config, demonstrations=demos)
    examples, _ = ranking_examples(tok, records, block_size=64)
    sequences = [seq for ex in examples for seq in ex.sequences]
    scores = score_sequences(result.model, sequences, pad_id=tok.pad_id)
    assert float(scores.std()) == pytest.approx(1.0, rel=1e-3)
    scorer = RewardModelScorer(result.model, pad_id=tok.pad_id)
    prompts = [tok.render_prompt(d.turns[:1]) for d in demos]
    replies = [tok.render_reply(d.turns[1]["content"]) for d in demos]
    assert sum(scorer.score_batch(prompts, replies)) / len(demos) == pytest.approx(0.0, abs=1e-4)
    assert result.metrics["reward_gain"] > 0


def test_prompts_never_straddle_the_split_and_several_rankings_are_used():
    tok = tokenizer()
    records = [
        RankingRecord(user(f"q{i % 5}"), ["a", "bb", "ccc"], [[0, 1, 2], [1, 0, 2]])
        for i in range(20)
    ]
    examples, _ = ranking_examples(tok, records, block_size=64)
    assert len(examples[0].pairs) == 6  # both rankings' pairs, the contradicting ones included
    result = train_reward_model(
        tiny_rm(), tok, records, RewardConfig(val_fraction=0.4, max_steps=1)
    )
    # 5 distinct prompts, 2 of them held out, each with its 4 records
    assert result.metrics["val_prompts"] == 8 and result.metrics["train_prompts"] == 12


def test_stop_and_resume_reach_the_uninterrupted_model(tmp_path):
    tok, records = tokenizer(), hidden_rule_data(40, seed=1)
    config = RewardConfig(epochs=2, batch_size=8, lr=3e-3, val_fraction=0.2)
    straight = train_reward_model(tiny_rm(), tok, records, config, checkpoint_dir=tmp_path / "a")
    stopped = train_reward_model(
        tiny_rm(),
        tok,
        records,
        config,
        checkpoint_dir=tmp_path / "b",
        on_step=lambda p: p.step == 3,
    )
    assert stopped.stopped and stopped.step == 3
    resumed = train_reward_model(tiny_rm(), tok, records, config, checkpoint_dir=tmp_path / "b")
    assert resumed.step == straight.step == 8
    for a, b in itertools.zip_longest(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert resumed.metrics["reward_offset"] == straight.metrics["reward_offset"]


def test_keep_best_ends_on_the_weights_of_the_best_held_out_accuracy():
    """Early stopping: with `keep_best`, a run whose later steps do worse on the held-out prompts
    (here a learning rate far too high for the last steps) ends on its best evaluation's weights,
    and its metrics are that evaluation's."""
    tok = tokenizer()
    records = hidden_rule_data(60)
    seen = []
    config = RewardConfig(epochs=4, batch_size=8, lr=3e-3, val_fraction=0.2, eval_every=3,
                          keep_best=True)  # fmt: skip
    result = train_reward_model(tiny_rm(), tok, records, config,
                                on_step=lambda p: seen.append(dict(p.metrics)))  # fmt: skip
    m = result.metrics
    evaluated = {s["val_accuracy"] for s in seen if "val_accuracy" in s}
    assert len(evaluated) > 1 and m["val_accuracy"] == pytest.approx(max(evaluated))
    assert 0 < m["best_step"] <= result.total_steps
    model = result.model
    examples, _ = ranking_examples(tok, records, block_size=model.config.block_size)
    _, val_idx = split_by_prompt([e.key for e in examples], 0.2, seed=0)
    figures = evaluate_rankings(
        model, [examples[i] for i in val_idx], pad_id=tok.pad_id, batch_size=8
    )
    assert figures["accuracy"] == pytest.approx(m["val_accuracy"])  # the kept weights' figure


def test_early_stopping_ends_on_the_best_held_out_checkpoint_when_later_epochs_are_worse(
    tmp_path,
):
    """A constructed case: a reward model that already ranks held-out prompts well goes on
    training on rankings that reverse that rule, so the longer it trains the worse it does on
    prompts it never saw. With `patience` it stops after that many evaluations without a better
    one and ends on the best evaluation's weights; the fixed epoch count ends far below. A
    resumed early-stopped run stays stopped."""
    tok = tokenizer()
    records = [replace(r, prompt_id=i) for i, r in enumerate(hidden_rule_data(60))]
    warm = tiny_rm()
    train_reward_model(warm, tok, records, RewardConfig(epochs=3, lr=3e-3, val_fraction=0))
    examples, _ = ranking_examples(tok, records, block_size=64)
    _, val_idx = split_by_prompt([e.key for e in examples], 0.2, seed=0)
    held_out = {examples[i].key for i in val_idx}
    records = [r if r.prompt_id in held_out else replace(r, rankings=[r.rankings[0][::-1]])
               for r in records]  # fmt: skip
    config = RewardConfig(epochs=6, batch_size=8, lr=1e-3, val_fraction=0.2, eval_every=2)
    fixed = train_reward_model(copy.deepcopy(warm), tok, records, config)
    evaluations = {}
    early = train_reward_model(
        copy.deepcopy(warm), tok, records, replace(config, patience=2), checkpoint_dir=tmp_path,
        on_step=lambda p: evaluations.__setitem__(p.step, p.metrics.get("val_accuracy")),
    )  # fmt: skip
    evaluations = {s: a for s, a in evaluations.items() if s % 2 == 0}
    best_step = max(evaluations, key=evaluations.get)
    m = early.metrics
    assert early.step == m["stopped_early_at"] == best_step + 2 * 2 < fixed.total_steps
    assert m["best_step"] == best_step and m["val_accuracy"] == evaluations[best_step]
    figures = evaluate_rankings(early.model, [examples[i] for i in val_idx], pad_id=tok.pad_id,
                                batch_size=8)  # fmt: skip
    assert figures["accuracy"] == pytest.approx(m["val_accuracy"])  # the kept weights' figure
    assert m["val_accuracy"] >= 0.8
    assert m["val_accuracy"] > fixed.metrics["val_accuracy"] + 0.2  # the last epoch is worse
    assert m["val_length_baseline_accuracy"] == fixed.metrics["val_length_baseline_accuracy"]
    resumed = train_reward_model(copy.deepcopy(warm), tok, records,
                                 replace(config, patience=2), checkpoint_dir=tmp_path)  # fmt: skip
    assert resumed.step == early.step and resumed.metrics["best_step"] == best_step


def test_reward_centering_keeps_the_scores_small_and_still_learns_the_rule():
    """`center_coef` adds mean(r^2) to the loss: the trained scores spread less (the gain that
    normalizes them to a unit spread is larger) while the held-out pairs stay right."""
    tok, records = tokenizer(), hidden_rule_data(120, seed=3)
    config = RewardConfig(epochs=3, batch_size=8, lr=3e-3, val_fraction=0.2)
    plain = train_reward_model(tiny_rm(), tok, records, config).metrics
    centered = train_reward_model(tiny_rm(), tok, records, replace(config, center_coef=1.0)).metrics
    assert centered["reward_gain"] > 1.5 * plain["reward_gain"]
    assert centered["val_accuracy"] >= 0.85

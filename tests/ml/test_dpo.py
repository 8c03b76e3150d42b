"""DPO: each loss variant equals TRL's formula, reply log-probs count the reply's tokens only, the
policy starts equal to the reference, DPO on rankings by the demo's simulated labelers raises
the share of replies the rule prefers and the held-out preference accuracy, LoRA trains only the
adapters against the untouched base, a stopped run resumes to the same weights, and bad input
or settings are clear errors."""

import copy
import dataclasses
import math
from collections import namedtuple

import pytest
import torch
import torch.nn.functional as F
from tiny_text import docs_tokenizer

from training.demo.labelers import SimulatedLabeler
from training.demo.rules import PREFERENCES
from training.ml.dpo import (
    DPOConfig,
    dpo_losses,
    evaluate_preferences,
    reference_logprobs,
    reply_batch,
    reply_logprobs,
    train_dpo,
)
from training.ml.gpt import GPT, GPTConfig
from training.ml.lora import adapters_disabled, has_lora
from training.ml.records import Demonstration, RankingRecord, split_by_prompt
from training.ml.reward_data import ranking_examples
from training.ml.sampling import SampleConfig, generate
from training.ml.sft import SFTConfig, train_sft

tokenizer = docs_tokenizer
RULE = PREFERENCES["returns"]  # the demo's default: a reply that says what it returns wins
REPLIES = ["returns {}", "it returns {}", "gives {}", "is {}"]  # half follow the rule
OBJECTS = ["a string", "an object", "a string"]
Completion = namedtuple("Completion", "pk text")


def question(i):
    return [{"role": "user", "content": f"what does f{i} do?"}]


def tiny_gpt(seed=0):
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=tokenizer().vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32
    )
    return GPT(config)


def sft_on(ways: list[str]):
    """A tiny model fine-tuned to answer question i in way i mod len(ways) (about an object)."""
    demos = [
        Demonstration(question(i) + [{"role": "assistant",
                                      "content": ways[i % len(ways)].format(OBJECTS[i % 3])}])
        for i in range(48)
    ]  # fmt: skip
    config = SFTConfig(epochs=30, batch_size=8, lr=3e-3, warmup_steps=5, val_fraction=0)
    return train_sft(tiny_gpt(), tokenizer(), demos, config).model


@pytest.fixture(scope="module")
def sft_model():
    """A tiny model fine-tuned to answer in four ways, half of them saying what the function
    returns: about half its samples follow the rule."""
    return sft_on(REPLIES)


def samples(model, prompts, *, num_samples, seed):
    tok = tokenizer()
    ids = [tok.render_prompt(question(i)) for i in prompts]
    config = SampleConfig(max_new_tokens=16, temperature=1.0, num_samples=num_samples, seed=seed)
    out = generate(model, ids, config, stop_id=tok.end_id, pad_id=tok.pad_id)
    return [tok.decode(r) for r in out.responses]


@pytest.fixture(scope="module")
def rankings(sft_model):
    """The loop's data: K = 4 samples of the SFT model per prompt, ranked by a simulated
    labeler of the demo (ties between replies alike under the rule)."""
    labeler = SimulatedLabeler(RULE)
    prompts = range(100, 180)
    texts = samples(sft_model, prompts, num_samples=4, seed=7)
    records = []
    for n, i in enumerate(prompts):
        replies = texts[4 * n : 4 * n + 4]
        order = labeler.rank([Completion(k, t) for k, t in enumerate(replies)], None)
        records.append(RankingRecord(question(i), replies, [order]))
    return records


def preferred_share(model) -> float:
    """The share of sampled replies to new prompts that the rule prefers."""
    texts = samples(model, range(200, 232), num_samples=8, seed=1)
    return sum(RULE.score(t, None) for t in texts) / len(texts)


# -- the maths against TRL ------------------------------------------------------------------


def trl_loss(chosen, rejected, ref_chosen, ref_rejected, *, beta, loss_type, label_smoothing,
             chosen_tokens, rejected_tokens):  # fmt: skip
    """TRL's DPOTrainer (trl/trainer/dpo_trainer.py): sigmoid as in v0.28 (`dpo_loss`), robust
    as in v0.28 and v1.0, ipo as in v1.0 (`_compute_loss`: log-ratios over completion tokens)."""
    chosen_logratios = chosen - ref_chosen
    rejected_logratios = rejected - ref_rejected
    logits = (chosen - rejected) - (ref_chosen - ref_rejected)
    if loss_type == "sigmoid":
        return (
            -F.logsigmoid(beta * logits) * (1 - label_smoothing)
            - F.logsigmoid(-beta * logits) * label_smoothing
        )
    if loss_type == "robust":
        return (
            -F.logsigmoid(beta * logits) * (1 - label_smoothing)
            + F.logsigmoid(-beta * logits) * label_smoothing
        ) / (1 - 2 * label_smoothing)
    chosen_avg_score = chosen_logratios / chosen_tokens.clamp(min=1.0)
    rejected_avg_score = rejected_logratios / rejected_tokens.clamp(min=1.0)
    ipo_delta = chosen_avg_score - rejected_avg_score
    return (ipo_delta - 1 / (2 * beta)) ** 2


@pytest.mark.parametrize(
    "loss_type,beta,label_smoothing",
    [("sigmoid", 0.1, 0.0), ("sigmoid", 0.5, 0.2), ("robust", 0.1, 0.1), ("robust", 1.0, 0.3),
     ("ipo", 0.1, 0.0), ("ipo", 0.7, 0.0)],
)  # fmt: skip
def test_each_loss_equals_trls_formula_on_random_log_probs(loss_type, beta, label_smoothing):
    generator = torch.Generator().manual_seed(0)
    logps = [-40 * torch.rand(64, generator=generator) for _ in range(4)]
    tokens = [torch.randint(1, 30, (64,), generator=generator).float() for _ in range(2)]
    settings = dict(beta=beta, loss_type=loss_type, label_smoothing=label_smoothing,
                    chosen_tokens=tokens[0], rejected_tokens=tokens[1])  # fmt: skip
    ours = dpo_losses(*logps, **settings)
    assert torch.allclose(ours, trl_loss(*logps, **settings), rtol=1e-6, atol=1e-6)


def test_with_equal_policy_and_reference_the_losses_are_trls_starting_values():
    zero = torch.zeros(3)
    tokens = torch.ones(3)
    sigmoid = dpo_losses(zero, zero, zero, zero, beta=0.1, label_smoothing=0.2)
    assert torch.allclose(sigmoid, torch.full((3,), math.log(2)))
    ipo = dpo_losses(zero, zero, zero, zero, beta=0.1, loss_type="ipo", chosen_tokens=tokens,
                     rejected_tokens=tokens)  # fmt: skip
    assert torch.allclose(ipo, torch.full((3,), 25.0))  # (0 - 1 / 0.2)^2


def test_reply_log_probs_sum_the_reply_and_its_end_token_only():
    """Brute force over full logits; the long reply is cut to the block from the left, and its
    first kept token (predicted by nothing) is not counted."""
    tok, model = tokenizer(), tiny_gpt().eval()
    long_reply = "a much longer reply than the others, which goes on beyond the block size"
    record = RankingRecord(question(1), ["a", long_reply, "no"], [[0, 1, 2]])
    examples, _ = ranking_examples(tok, [record], block_size=24)
    batch, tokens = reply_batch(examples, pad_id=tok.pad_id, device="cpu")
    with torch.no_grad():
        ours = reply_logprobs(model, batch, tokens)
        prompt = tok.render_prompt(record.prompt)
        for i, text in enumerate(record.completions):
            reply = tok.render_reply(text)
            seq = (prompt + reply)[-24:]
            n = min(len(reply), len(seq) - 1)
            logp = torch.log_softmax(model(torch.tensor([seq]))[0][0], -1)
            brute = sum(float(logp[j - 1, seq[j]]) for j in range(len(seq) - n, len(seq)))
            assert float(ours[i]) == pytest.approx(brute, rel=1e-5)
            assert int(tokens[i]) == n
    assert int(tokens[1]) == 23  # the long reply fills the block


# -- training -------------------------------------------------------------------------------


def test_the_policy_starts_equal_to_the_reference(sft_model, rankings):
    first = []
    config = DPOConfig(max_steps=1, batch_size=8, lr=1e-4, val_fraction=0.2)
    train_dpo(copy.deepcopy(sft_model), tokenizer(), rankings, config, on_step=first.append)
    m = first[0].metrics
    assert first[0].stage == "dpo"
    assert abs(m["chosen_reward"]) < 1e-5 and abs(m["rejected_reward"]) < 1e-5
    assert m["loss"] == pytest.approx(math.log(2), abs=1e-5)


def test_dpo_on_the_demo_rule_raises_the_preferred_share_and_held_out_accuracy(
    sft_model, rankings
):
    """What a user wants from DPO on the demo: new prompts' samples follow the labelers' rule
    more often, and on held-out prompts the policy moved toward the reply they preferred."""
    before = preferred_share(sft_model)
    reports = []
    config = DPOConfig(epochs=12, batch_size=8, lr=1e-4, beta=0.5, val_fraction=0.2)
    result = train_dpo(copy.deepcopy(sft_model), tokenizer(), rankings, config,
                       on_step=reports.append)  # fmt: skip
    m = result.metrics
    assert m["val_prompts"] >= 10 and m["val_pairs"] > 20
    assert m["val_accuracy"] >= 0.8
    assert m["val_margin"] > 0.3 and m["val_chosen_reward"] > m["val_rejected_reward"]
    after = preferred_share(result.model)
    assert after >= before + 0.1, (before, after)
    assert [p.step for p in reports] == list(range(1, result.total_steps + 1))
    for name in ("loss", "accuracy", "chosen_reward", "rejected_reward", "margin", "grad_norm"):
        assert name in reports[-1].metrics


@pytest.mark.parametrize("loss_type,label_smoothing", [("ipo", 0.0), ("robust", 0.1)])
def test_the_other_losses_learn_the_held_out_preference(sft_model, rankings, loss_type,
                                                        label_smoothing):  # fmt: skip
    config = DPOConfig(epochs=5, batch_size=8, lr=1e-4, val_fraction=0.2, loss_type=loss_type,
                       label_smoothing=label_smoothing)  # fmt: skip
    result = train_dpo(copy.deepcopy(sft_model), tokenizer(), rankings, config)
    assert result.metrics["val_accuracy"] >= 0.85 and result.metrics["val_margin"] > 0


def test_the_reference_is_the_model_as_given(sft_model, rankings):
    """The held-out implicit rewards are measured against the SFT model itself, though the same
    weights were trained in place; the longer-reply baseline is reported on the same pairs."""
    tok = tokenizer()
    config = DPOConfig(max_steps=6, batch_size=8, lr=3e-4, val_fraction=0.2)
    result = train_dpo(copy.deepcopy(sft_model), tok, rankings, config)
    examples, _ = ranking_examples(tok, rankings, block_size=64)
    _, val = split_by_prompt([ex.key for ex in examples], 0.2, seed=0)
    held_out = reference_logprobs(sft_model, [examples[i] for i in val], pad_id=tok.pad_id,
                                  batch_size=8)  # fmt: skip
    figures = evaluate_preferences(result.model, held_out, config, pad_id=tok.pad_id)
    assert figures["margin"] != 0
    for name in ("loss", "accuracy", "margin", "chosen_reward", "rejected_reward",
                 "length_baseline_accuracy"):  # fmt: skip
        assert figures[name] == pytest.approx(result.metrics[f"val_{name}"], rel=1e-5, abs=1e-6)
    # the baseline beside it: the longer reply of each held-out pair wins, a tie counting half
    lengths = [(ex.ranking.reply_lengths[w], ex.ranking.reply_lengths[lose])
               for ex in held_out for w, lose in ex.ranking.pairs]  # fmt: skip
    longer = [(w > lose) + 0.5 * (w == lose) for w, lose in lengths]
    assert 0 < sum(longer) < len(longer) == figures["pairs"]
    assert figures["length_baseline_accuracy"] == pytest.approx(sum(longer) / len(longer))


def test_with_two_models_replies_the_held_out_figures_count_one_models_pairs_apart(
    sft_model, rankings
):
    """When a task ranks two models' replies, the accuracy on the pairs whose replies one model
    wrote is reported beside the accuracy over all pairs (telling who wrote a reply is not
    learning the preference); with one writer, or none known, there is nothing to set apart."""
    tok = tokenizer()
    config = DPOConfig(max_steps=6, batch_size=8, lr=3e-4, val_fraction=0.2)
    policy = train_dpo(copy.deepcopy(sft_model), tok, rankings, config).model

    def figures(writers):
        records = [dataclasses.replace(r, writers=writers) for r in rankings]
        examples, _ = ranking_examples(tok, records, block_size=64)
        held_out = reference_logprobs(sft_model, examples[-16:], pad_id=tok.pad_id, batch_size=8)
        return held_out, evaluate_preferences(policy, held_out, config, pad_id=tok.pad_id)

    held_out, mixed = figures(["sft", "sft", "base", "base"])
    right = []
    for ex in held_out:
        batch, tokens = reply_batch([ex.ranking], pad_id=tok.pad_id, device="cpu")
        with torch.no_grad():
            ratio = (reply_logprobs(policy, batch, tokens) - torch.tensor(ex.reference)).tolist()
        right += [(ratio[w] > ratio[lose]) + 0.5 * (ratio[w] == ratio[lose])
                  for w, lose in ex.ranking.pairs if (w < 2) == (lose < 2)]  # fmt: skip
    assert 0 < len(right) < mixed["pairs"] == sum(len(ex.ranking.pairs) for ex in held_out)
    assert mixed["same_writer_pairs"] == len(right)
    assert mixed["same_writer_accuracy"] == pytest.approx(sum(right) / len(right))
    # no pair of two writers' replies, or none of one known writer's: nothing to set apart
    for writers in (["sft"] * 4, None, ["sft", None, "base", None]):
        assert "same_writer_accuracy" not in figures(writers)[1]


def test_with_lora_only_the_adapters_learn_and_the_base_stays_the_reference(sft_model,
                                                                            rankings):  # fmt: skip
    tok = tokenizer()
    model = copy.deepcopy(sft_model)
    base = {name: p.detach().clone() for name, p in sft_model.named_parameters()}
    examples, _ = ranking_examples(tok, rankings[:8], block_size=64)
    batch, tokens = reply_batch(examples, pad_id=tok.pad_id, device="cpu")
    with torch.no_grad():
        reference = reply_logprobs(sft_model, batch, tokens)
    checked = []

    def check(progress):
        trained = {n for n, p in model.named_parameters() if p.grad is not None}
        assert trained and all(".lora_" in n for n in trained)
        for name, p in model.named_parameters():
            if ".lora_" not in name:
                assert torch.equal(p, base[name.replace(".base_layer", "")]), name
        with torch.no_grad(), adapters_disabled(model):
            assert torch.allclose(reply_logprobs(model, batch, tokens), reference, atol=1e-5)
        checked.append(progress.step)

    config = DPOConfig(max_steps=4, batch_size=8, lr=1e-3, lora_rank=4, val_fraction=0.2)
    result = train_dpo(model, tok, rankings, config, on_step=check)
    assert checked == [1, 2, 3, 4]
    assert not has_lora(result.model)  # merged: a plain model to save as the policy
    assert result.metrics["val_margin"] > 0
    assert any(not torch.equal(p, base[n]) for n, p in result.model.named_parameters())


def test_a_stopped_run_resumes_to_the_uninterrupted_weights(sft_model, rankings, tmp_path):
    tok = tokenizer()
    config = DPOConfig(epochs=2, batch_size=16, lr=3e-4, warmup_steps=2, val_fraction=0.2)
    straight = train_dpo(copy.deepcopy(sft_model), tok, rankings, config,
                         checkpoint_dir=tmp_path / "a")  # fmt: skip
    stopped = train_dpo(copy.deepcopy(sft_model), tok, rankings, config,
                        checkpoint_dir=tmp_path / "b", on_step=lambda p: p.step == 3)  # fmt: skip
    assert stopped.stopped and stopped.step == 3 < stopped.total_steps
    seen = []
    resumed = train_dpo(copy.deepcopy(sft_model), tok, rankings, config,
                        checkpoint_dir=tmp_path / "b", on_step=seen.append)  # fmt: skip
    assert [p.step for p in seen] == list(range(4, straight.total_steps + 1))
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):  # fmt: skip
        assert torch.equal(a, b), name
    assert resumed.metrics["val_accuracy"] == straight.metrics["val_accuracy"]


def test_early_stopping_ends_on_the_best_held_out_weights_when_later_epochs_are_worse(
    sft_model, rankings, tmp_path
):
    """A constructed case: the training prompts' rankings reverse the rule the held-out prompts'
    follow, so the longer DPO trains the worse it orders pairs it never saw. With `patience` it
    stops after that many evaluations without a better one (accuracy, then loss) and ends on the
    best evaluation's weights, which do better on the held-out pairs than the fixed epoch count's
    last; a resumed early-stopped run stays stopped."""
    tok = tokenizer()
    examples, _ = ranking_examples(tok, rankings, block_size=64)
    _, val = split_by_prompt([ex.key for ex in examples], 0.2, seed=0)
    held_out = {examples[i].key for i in val}
    reverse = [r.rankings[0][::-1] for r in rankings]
    records = [r if r.key() in held_out else dataclasses.replace(r, rankings=[order])
               for r, order in zip(rankings, reverse, strict=True)]  # fmt: skip
    config = DPOConfig(epochs=6, batch_size=8, lr=3e-4, val_fraction=0.2, eval_every=2)
    fixed = train_dpo(copy.deepcopy(sft_model), tok, records, config)
    evaluations = {}
    early = train_dpo(
        copy.deepcopy(sft_model), tok, records, dataclasses.replace(config, patience=2),
        checkpoint_dir=tmp_path,
        on_step=lambda p: evaluations.__setitem__(p.step, (p.metrics.get("val_accuracy"),
                                                           -p.metrics.get("val_loss", 0))),
    )  # fmt: skip
    evaluations = {s: key for s, key in evaluations.items() if s % 2 == 0}
    best_step = max(evaluations, key=evaluations.get)
    m = early.metrics
    assert early.step == m["stopped_early_at"] == best_step + 2 * 2 < fixed.total_steps
    assert m["best_step"] == best_step and m["val_accuracy"] == evaluations[best_step][0]
    kept = reference_logprobs(sft_model, [examples[i] for i in val], pad_id=tok.pad_id,
                              batch_size=8)  # fmt: skip
    figures = evaluate_preferences(early.model, kept, config, pad_id=tok.pad_id)
    assert figures["loss"] == pytest.approx(m["val_loss"], rel=1e-5)  # the kept weights' figure
    # the last epoch is worse: it orders no more held-out pairs right, and with more confidence
    # the wrong way
    assert m["val_accuracy"] >= fixed.metrics["val_accuracy"]
    assert m["val_loss"] < fixed.metrics["val_loss"] - 0.1
    assert m["val_margin"] > fixed.metrics["val_margin"]
    resumed = train_dpo(copy.deepcopy(sft_model), tok, records, dataclasses.replace(
        config, patience=2), checkpoint_dir=tmp_path)  # fmt: skip
    assert resumed.step == early.step and resumed.metrics["best_step"] == best_step


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings,message",
    [(dict(beta=0.0), "beta must be > 0"), (dict(loss_type="hinge"), "loss_type must be one of"),
     (dict(loss_type="ipo", label_smoothing=0.1), "not ipo"),
     (dict(loss_type="robust", label_smoothing=0.5), r"\[0, 0.5\)"),
     (dict(label_smoothing=0.7), "label_smoothing must be in")],
)  # fmt: skip
def test_bad_settings_are_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        DPOConfig(**settings)


def test_unusable_data_and_a_nan_loss_are_clear_errors():
    tok = tokenizer()
    only_ties = [RankingRecord(question(1), ["a", "b"], [[[0, 1]]])]
    with pytest.raises(ValueError, match="no usable ranking record.*only_ties"):
        train_dpo(tiny_gpt(), tok, only_ties, DPOConfig())
    model = tiny_gpt()
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")
    records = [RankingRecord(question(i), ["returns a string", "is a string"], [[0, 1]])
               for i in range(4)]  # fmt: skip
    with pytest.raises(FloatingPointError, match="DPO loss is nan at step 1"):
        train_dpo(model, tok, records, DPOConfig(max_steps=2, val_fraction=0))


# -- RPO: preferred replies the model would not write -----------------------------------------

OWN_WAYS = ["gives {}", "is {}", "makes {}"]  # never "returns": the SFT model does not say it


@pytest.fixture(scope="module")
def other_models_wins():
    """(an SFT model that never says what a function returns, rankings in which the replies
    another model wrote, which do, beat its own two samples): what a round with `sample_mix`
    gives DPO when the labelers prefer what only the other model writes."""
    model = sft_on(OWN_WAYS)
    prompts = range(100, 180)
    own = samples(model, prompts, num_samples=2, seed=7)
    records = []
    for n, i in enumerate(prompts):
        replies = own[2 * n : 2 * n + 2] + [f"returns {OBJECTS[i % 3]}",
                                             f"it returns {OBJECTS[(i + 1) % 3]}"]  # fmt: skip
        order = SimulatedLabeler(RULE).rank([Completion(k, t) for k, t in enumerate(replies)], None)
        records.append(RankingRecord(question(i), replies, [order]))
    return model, records


def test_rpo_adds_the_chosen_replies_nll_per_token_to_the_dpo_loss(other_models_wins):
    model, records = other_models_wins
    first = {}
    for alpha in (0.0, 0.7):
        reports = []
        config = DPOConfig(max_steps=1, batch_size=8, lr=1e-4, val_fraction=0, rpo_alpha=alpha)
        train_dpo(copy.deepcopy(model), tokenizer(), records, config, on_step=reports.append)
        first[alpha] = reports[0].metrics
    nll = first[0.0]["chosen_nll"]  # the same first batch, the same weights
    assert nll > 1 and first[0.7]["chosen_nll"] == pytest.approx(nll)
    assert first[0.0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert first[0.7]["loss"] == pytest.approx(math.log(2) + 0.7 * nll, rel=1e-5)


def test_with_rpo_the_policy_learns_to_write_what_only_another_model_wrote(other_models_wins):
    """DPO alone orders the pairs right but pushes the model's own replies down rather than
    making the preferred ones likely: it still never says what a function returns. With RPO's
    likelihood term it does."""
    model, records = other_models_wins
    assert preferred_share(model) == 0
    shares, nll = {}, {}
    for alpha in (0.0, 1.0):
        config = DPOConfig(epochs=25, batch_size=8, lr=2e-3, beta=0.5, val_fraction=0.2,
                           rpo_alpha=alpha)  # fmt: skip
        result = train_dpo(copy.deepcopy(model), tokenizer(), records, config)
        assert result.metrics["val_accuracy"] == 1.0  # both rank the held-out pairs right
        shares[alpha], nll[alpha] = preferred_share(result.model), result.metrics["val_chosen_nll"]
    assert shares[0.0] < 0.1 and nll[0.0] > 2
    assert shares[1.0] > 0.4 and nll[1.0] < 1, (shares, nll)

import pytest
import torch

from training.ml.corpus import TokenStream, read_text_files, stdlib_docs
from training.ml.model_files import load_model
from training.ml.pretrain import PretrainConfig, pretrain, sample_text

TEXT = (
    "The standard library offers modules for files, text, numbers and dates. "
    "Each module has a docstring that says what it does and how to use it. "
) * 40


def config_for(corpus, **overrides):
    values = dict(
        preset="tiny",
        vocab_size=300,
        steps=6,
        batch_size=2,
        block_size=32,
        warmup_steps=2,
        text_paths=[str(corpus)],
        val_fraction=0.3,
        eval_every=3,
        eval_batches=1,
        checkpoint_every=3,
    )
    return PretrainConfig(**{**values, **overrides})


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(4):
        (folder / f"doc{i}.txt").write_text(TEXT)
    return folder


def test_pretrain_saves_a_base_model_and_then_reuses_it(tmp_path, corpus):
    seen = []
    result = pretrain(config_for(corpus), out_dir=tmp_path / "run", on_step=seen.append)
    assert result.finished and not result.cached and result.step == 6
    assert [p.step for p in seen] == [1, 2, 3, 4, 5, 6]
    assert "val_loss" in seen[2].metrics and seen[-1].metrics["loss"] < seen[0].metrics["loss"]
    model, info = load_model(result.model_dir)
    assert model.config.block_size == 32 and info["meta"]["stage"] == "pretrain"
    assert sample_text(result.model_dir, "The", max_new_tokens=5).startswith("The")

    again = pretrain(config_for(corpus), out_dir=tmp_path / "run", on_step=seen.append)
    assert again.cached and again.step == 6 and len(seen) == 6  # nothing trained


def test_a_stopped_run_resumes_to_the_same_weights(tmp_path, corpus):
    straight = pretrain(config_for(corpus), out_dir=tmp_path / "straight")

    stopped = pretrain(
        config_for(corpus), out_dir=tmp_path / "resumed", on_step=lambda p: p.step == 2
    )
    assert not stopped.finished and stopped.step == 2
    seen = []
    resumed = pretrain(config_for(corpus), out_dir=tmp_path / "resumed", on_step=seen.append)
    assert resumed.finished and [p.step for p in seen] == [3, 4, 5, 6]

    a, _ = load_model(straight.model_dir)
    b, _ = load_model(resumed.model_dir)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_another_config_in_the_same_directory_is_refused_unless_fresh(tmp_path, corpus):
    pretrain(config_for(corpus), out_dir=tmp_path / "run")
    with pytest.raises(ValueError, match="another config"):
        pretrain(config_for(corpus, lr=1e-4), out_dir=tmp_path / "run")
    result = pretrain(config_for(corpus, lr=1e-4), out_dir=tmp_path / "run", resume=False)
    assert result.finished and not result.cached


def test_the_default_corpus_is_the_standard_library_documentation():
    docs = stdlib_docs()
    assert len(docs) > 1000 and sum(map(len, docs)) > 1_000_000
    assert any("for" in d and "loop" in d for d in docs[:200])  # the pydoc topics come first


def test_token_stream_splits_documents_and_batches_next_tokens(tiny_tokenizer, corpus):
    docs = read_text_files([corpus])
    stream = TokenStream.build(docs, tiny_tokenizer, val_fraction=0.25)
    assert stream.train[0] == tiny_tokenizer.eot_id
    assert (stream.val == tiny_tokenizer.eot_id).sum() == 1  # one whole document
    x, y = TokenStream.batch(stream.train, 3, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (3, 16) and torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(FileNotFoundError):
        read_text_files([corpus / "missing.txt"])

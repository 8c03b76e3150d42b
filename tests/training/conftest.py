"""Fixtures for the training tests: a tiny base model on disk, a project with demonstrations,
and real workers that train with one CPU thread and write checkpoints under a temporary folder."""

import itertools

import pytest
from training_helpers import TINY, add_demonstrations, demo_rows, make_project

_seq = itertools.count(1)


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory):
    """A tiny GPT (2 layers, 32 wide) and a 400-token BPE tokenizer trained on the demo texts,
    saved as a model directory. Made once per session, in well under a second."""
    import torch

    from training.ml.gpt import GPT, GPTConfig
    from training.ml.model_files import save_model
    from training.ml.tokenizer import train_tokenizer

    directory = tmp_path_factory.mktemp("tiny-base")
    rows = demo_rows()
    tokenizer = train_tokenizer([f"{r['prompt']} {r['response']}" for r in rows], vocab_size=400)
    tokenizer.save(directory / "tokenizer.json")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, **TINY))
    save_model(
        directory / "model",
        model,
        tokenizer_path=directory / "tokenizer.json",
        meta={"stage": "test"},
    )
    return directory / "model"


@pytest.fixture(scope="session")
def chat_model_dir(tiny_base_dir, tmp_path_factory):
    """The tiny base model with weights drawn wide, so greedy replies differ per prompt and
    are made of text (the fresh tiny model repeats one control token whatever it is asked)."""
    import torch

    from training.ml.model_files import load_model, save_model

    model, info = load_model(tiny_base_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    directory = tmp_path_factory.mktemp("chat-model") / "model"
    save_model(directory, model, tokenizer_path=info["tokenizer_path"], meta={"stage": "test"})
    return directory


@pytest.fixture
def chat_version(db, chat_model_dir):
    from training.services.model_versions import model_version_register

    return model_version_register(checkpoint_dir=str(chat_model_dir), name="chatty")


@pytest.fixture
def artifacts(settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    return settings.ARTIFACTS_DIR


@pytest.fixture
def base_version(db, tiny_base_dir):
    from training.services.model_versions import model_version_register

    return model_version_register(checkpoint_dir=str(tiny_base_dir), name="tiny-base")


@pytest.fixture
def author(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(f"writer{next(_seq)}")


@pytest.fixture
def project_with_demos(author):
    project = make_project()
    add_demonstrations(project, author, 12)
    return project


@pytest.fixture
def training_worker(worker_factory, artifacts):
    """`training_worker(queues=...)`: a real worker that shares the test's ARTIFACTS_DIR and
    trains on one thread (on two contended cores that is ten times faster than two)."""

    def start(queues=("training", "sampling")):
        return worker_factory(
            queues=queues, env={"ARTIFACTS_DIR": str(artifacts), "OMP_NUM_THREADS": "1"}
        )

    return start

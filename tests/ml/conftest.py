"""Fixtures for the model-core tests: a tokenizer trained in a second on a few KB of the
standard library's docstrings, and tiny seeded GPTs that run in milliseconds on a CPU."""


import pytest
import torch
from tiny_text import docs_tokenizer

from training.ml.gpt import GPT, GPTConfig

TINY = dict(block_size=64, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run as fast on one thread as on two, and many times faster than two when
    other processes share the CPU (the threads' barriers then wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return docs_tokenizer()


@pytest.fixture
def make_model(tiny_tokenizer):
    """`make_model(seed=0, **config overrides)`: a fresh tiny GPT for the tiny tokenizer."""

    def make(seed: int = 0, **overrides) -> GPT:
        torch.manual_seed(seed)
        config = GPTConfig(vocab_size=tiny_tokenizer.vocab_size, **{**TINY, **overrides})
        return GPT(config)

    return make

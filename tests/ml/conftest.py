"""Fixtures for the model-core tests: a tokenizer trained in a second on a few KB of the
standard library's docstrings, and tiny seeded GPTs that run in milliseconds on a CPU."""

import argparse
import collections
import functools
import json
import re
import textwrap

import pytest
import torch

from training.ml.gpt import GPT, GPTConfig
from training.ml.tokenizer import train_tokenizer

TINY = dict(block_size=64, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    texts = [m.__doc__ for m in (argparse, collections, functools, json, re, textwrap)]
    return train_tokenizer(texts, vocab_size=512)


@pytest.fixture
def make_model(tiny_tokenizer):
    """`make_model(seed=0, **config overrides)`: a fresh tiny GPT for the tiny tokenizer."""

    def make(seed: int = 0, **overrides) -> GPT:
        torch.manual_seed(seed)
        config = GPTConfig(vocab_size=tiny_tokenizer.vocab_size, **{**TINY, **overrides})
        return GPT(config)

    return make

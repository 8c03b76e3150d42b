"""A tokenizer trained in a second on a few KB of the standard library's docstrings, shared by
the ML tests (import it as a module: fixtures can't be called from module-level helpers)."""
import argparse
import collections
import functools
import json
import re
import textwrap

from training.ml.tokenizer import ChatTokenizer, train_tokenizer


@functools.cache
def docs_tokenizer() -> ChatTokenizer:
    texts = [m.__doc__ for m in (argparse, collections, functools, json, re, textwrap)]
    return train_tokenizer(texts, vocab_size=512)

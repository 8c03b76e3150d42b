"""Pretraining text that exists on any machine with Python, and the token stream made from it.

Nothing can be downloaded, so the default corpus is the standard library's own documentation:
the docstrings of its modules, classes and functions (read with `ast` from the source files,
never imported, so no module runs) plus `pydoc_data.topics`, the language reference that
`help("for")` prints. About 2 MB of English prose about programming, enough for a tiny model to
learn to write English-like text. An admin can pass text files (or directories of .txt / .md
files) instead.
"""

import ast
import hashlib
import random
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from training.ml.tokenizer import ChatTokenizer

# Folders of the standard library that are tests, demos, vendored code or generated tables.
SKIPPED = {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo", "ensurepip"}
SKIPPED |= {"encodings", "__pycache__", "pydoc_data"}
TEXT_SUFFIXES = {".txt", ".md", ".rst"}


def stdlib_docs(min_chars: int = 40) -> list[str]:
    """The pydoc topics, then every docstring of at least `min_chars` characters in the
    standard library's .py files, in a fixed order."""
    from pydoc_data.topics import topics

    docs = [text.strip() for _, text in sorted(topics.items())]
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if SKIPPED.intersection(path.relative_to(root).parts[:-1]):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a file for another Python version, or not UTF-8
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= min_chars:
                    docs.append(doc)
    return docs


def read_text_files(paths: Iterable[str | Path]) -> list[str]:
    """One document per file; a directory contributes its .txt / .md / .rst files, sorted."""
    docs = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES)
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(f"corpus path {path} does not exist")
        docs += [f.read_text(encoding="utf-8", errors="replace") for f in files]
    if not any(doc.strip() for doc in docs):
        raise ValueError(f"no text found in {', '.join(map(str, paths))}")
    return docs


def load_corpus(text_paths: list[str]) -> list[str]:
    """The documents to pretrain on: `text_paths` if given, else the standard library docs."""
    return read_text_files(text_paths) if text_paths else stdlib_docs()


def corpus_id(text_paths: list[str]) -> str:
    """What identifies the corpus for caching: the files' contents, or the Python version
    whose standard library the default corpus comes from."""
    if not text_paths:
        return f"stdlib-docs:python-{sys.version.split()[0]}"
    digest = hashlib.sha256()
    for doc in read_text_files(text_paths):
        digest.update(doc.encode())
    return f"files:{digest.hexdigest()[:16]}"


@dataclass
class TokenStream:
    """Documents tokenized into one long sequence, each preceded by <|endoftext|>, split into
    train and validation by whole documents."""

    train: torch.Tensor  # (N,) long
    val: torch.Tensor  # (M,) long

    @classmethod
    def build(
        cls, docs: list[str], tokenizer: ChatTokenizer, *, val_fraction: float, seed: int = 0
    ) -> "TokenStream":
        docs = list(docs)
        random.Random(seed).shuffle(docs)
        n_val = max(1, round(len(docs) * val_fraction)) if len(docs) > 1 else 0
        encoded = tokenizer.encoding.encode_ordinary_batch(docs)

        def join(parts: list[list[int]]) -> torch.Tensor:
            return torch.tensor([t for ids in parts for t in (tokenizer.eot_id, *ids)])

        return cls(train=join(encoded[n_val:]), val=join(encoded[:n_val]))

    @staticmethod
    def batch(data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator):
        """Random windows: inputs (B, T) and next-token targets (B, T)."""
        if data.numel() <= block_size + 1:
            raise ValueError(f"corpus of {data.numel()} tokens is shorter than one block")
        starts = torch.randint(0, data.numel() - block_size - 1, (batch_size,), generator=generator)
        rows = torch.stack([data[s : s + block_size + 1] for s in starts.tolist()])  # (B, T+1)
        return rows[:, :-1], rows[:, 1:]

"""The reward model's data: ranking records tokenized into one example per prompt (its K
completions and the pairs of every ranking of them), and the padded batch in which each
completion goes through the model once (see `training.ml.reward` for why).
"""

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass

import torch

from training.ml.records import BadRecord, RankingRecord, ranking_pairs
from training.ml.tokenizer import ChatTokenizer


@dataclass
class RankingExample:
    """One prompt's K completions as token ids (prompt + reply + `<|end|>`), the (better,
    worse) pairs of all its rankings, and each reply's length in tokens (for the baseline)."""

    sequences: list[list[int]]
    pairs: list[tuple[int, int]]
    reply_lengths: list[int]
    key: Hashable = None
    writers: list[Hashable | None] | None = None  # as `RankingRecord.writers`


@dataclass
class RewardBatch:
    idx: torch.Tensor  # (N, T) right-padded: the completions of all the batch's prompts
    last: torch.Tensor  # (N,) column of each sequence's last token, where it is scored
    winners: torch.Tensor  # (P,) rows of the better completion of each pair
    losers: torch.Tensor  # (P,) rows of the worse one
    groups: torch.Tensor  # (P,) the prompt (batch element) each pair belongs to
    num_groups: int
    winner_lengths: torch.Tensor  # (P,) reply lengths, for the "longer reply wins" baseline
    loser_lengths: torch.Tensor
    # (P,) bool: the pair's two replies are by one known writer / by two different known ones
    same_writer: torch.Tensor
    other_writers: torch.Tensor


def ranking_examples(
    tokenizer: ChatTokenizer,
    records: list[RankingRecord],
    *,
    block_size: int,
    skip_invalid: bool = False,
) -> tuple[list[RankingExample], Counter]:
    """Tokenize ranking records. Records that cannot give a pair (fewer than 2 completions, no
    ranking, only ties) are skipped and counted by reason; a ranking that is not an ordering of
    the completions raises `BadRecord`, or is skipped and counted with `skip_invalid`."""
    examples, skipped = [], Counter()
    for n, record in enumerate(records):
        k = len(record.completions)
        if k < 2:
            skipped["fewer_than_2_completions"] += 1
            continue
        if not record.rankings:
            skipped["no_rankings"] += 1
            continue
        try:
            pairs = [pair for ranking in record.rankings for pair in ranking_pairs(ranking, k)]
            prompt = tokenizer.render_prompt(record.prompt)
        except BadRecord as exc:
            if not skip_invalid:
                raise BadRecord(f"ranking record {n}: {exc}") from None
            skipped["invalid_ranking"] += 1
            continue
        except ValueError as exc:
            if not skip_invalid:
                raise BadRecord(f"ranking record {n}: {exc}") from None
            skipped["invalid_prompt"] += 1
            continue
        if not pairs:
            skipped["only_ties"] += 1
            continue
        replies = [tokenizer.render_reply(text) for text in record.completions]
        # Too long: keep the end, where the score is read, and lose the start of the prompt.
        sequences = [(prompt + reply)[-block_size:] for reply in replies]
        lengths = [len(reply) for reply in replies]
        writers = record.writers if record.writers and len(record.writers) == k else None
        examples.append(RankingExample(sequences, pairs, lengths, record.key(), writers))
    return examples, skipped


def reward_batch(examples: list[RankingExample], *, pad_id: int, device) -> RewardBatch:
    """Flatten the completions of `examples` into one right-padded batch, with the pairs as row
    indices into it. Right padding needs no attention mask: nothing attends to a later token."""
    sequences = [seq for ex in examples for seq in ex.sequences]
    T = max(len(seq) for seq in sequences)  # noqa: N806
    idx = torch.full((len(sequences), T), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        idx[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    last = torch.tensor([len(seq) - 1 for seq in sequences])
    winners, losers, groups, win_len, lose_len, same, other = [], [], [], [], [], [], []
    offset = 0
    for g, ex in enumerate(examples):
        writers = ex.writers or [None] * len(ex.sequences)
        for w, l in ex.pairs:  # noqa: E741
            winners.append(offset + w)
            losers.append(offset + l)
            groups.append(g)
            win_len.append(ex.reply_lengths[w])
            lose_len.append(ex.reply_lengths[l])
            known = writers[w] is not None and writers[l] is not None
            same.append(known and writers[w] == writers[l])
            other.append(known and writers[w] != writers[l])
        offset += len(ex.sequences)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long, device=device)  # noqa: E731
    as_bool = lambda xs: torch.tensor(xs, dtype=torch.bool, device=device)  # noqa: E731
    return RewardBatch(
        idx.to(device),
        last.to(device),
        as_long(winners),
        as_long(losers),
        as_long(groups),
        len(examples),
        as_long(win_len),
        as_long(lose_len),
        as_bool(same),
        as_bool(other),
    )

"""Import prompts (and optional demonstrations) from JSONL or CSV: all lines or none.

JSONL, one object a line, any of:
    {"prompt": "text"}                                   a single user turn
    {"turns": [{"role": "user", "content": ...}, ...]}   a dialogue so far (also "messages")
    ... plus "response": "text"                          a demonstration of the prompt
    ... plus "demonstrations_needed": 2                  how many people should write one
    ... plus "evaluation": true                          held out for evaluation, never trained on
A "messages"/"turns" list that ends with an assistant turn is a prompt plus its demonstration.
CSV: a header with `prompt` and optionally `response`, `demonstrations_needed`, `evaluation`.
`evaluation_share` holds out a seeded random share of the new prompts as well.

A file is at most `MAX_BYTES`; callers holding an upload read `MAX_BYTES + 1` bytes of it, so an
oversized file is refused here without reading it whole. Every line is checked before anything
is written; one bad line fails the import with a report of
every bad line (`ImportFailed.errors`). Importing the same file again creates nothing: a line
whose turns are already a prompt of the project is counted as `already_present` (and its
demonstration is added only if that exact one is missing). A line whose normalized text matches
another prompt is created and flagged `duplicate_of` it.
"""
import csv
import hashlib
import io
import json
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F

from labeling.errors import ImportFailed, Invalid
from labeling.models import Demonstration, Project, Prompt
from labeling.parsing import json_value, whole_number
from labeling.services.evaluation_prompts import evaluation_share_pick
from labeling.validation import clean_text, clean_turns, content_hash, render_turns

MAX_LINES = 100_000
MAX_BYTES = 50 * 1024 * 1024  # 100,000 lines of ~500 bytes, with room to spare
MAX_ERRORS_REPORTED = 200
FORMATS = ("jsonl", "csv")


@dataclass
class ImportReport:
    lines: int = 0
    created: int = 0
    flagged_duplicates: int = 0
    already_present: int = 0
    demonstrations: int = 0
    evaluation: int = 0  # new prompts held out for evaluation
    prompt_ids: list[int] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.lines} lines: {self.created} prompts created "
            f"({self.flagged_duplicates} flagged as near-duplicates), "
            f"{self.already_present} already present, {self.demonstrations} demonstrations"
            + (f", {self.evaluation} held out for evaluation." if self.evaluation else ".")
        )


@dataclass
class _Line:
    number: int
    turns: list[dict]
    response: str | None
    needed: int
    digest: str = ""
    evaluation: bool = False


def format_for(filename: str) -> str:
    """The format a file's name implies: CSV for .csv, JSONL otherwise."""
    return "csv" if filename.lower().endswith(".csv") else "jsonl"


def prompts_import(
    *,
    project: Project,
    content: str | bytes,
    format: str,
    author=None,
    demonstrations_needed: int = 1,
    source: str = Prompt.Source.IMPORTED,
    evaluation_share: float = 0.0,
) -> ImportReport:
    """Parse, check every line, then write everything in one transaction (or raise)."""
    if format not in FORMATS:
        raise Invalid(f"Import format is one of {', '.join(FORMATS)}.")
    evaluation_share_pick([], share=evaluation_share, seed=0)  # checks the share before parsing
    if len(content) > MAX_BYTES:
        raise Invalid(f"The file is larger than {MAX_BYTES // 2**20} MB; split it into "
                      "smaller imports.")
    rows = _rows_jsonl(content) if format == "jsonl" else _rows_csv(content)
    lines, errors = [], []
    for number, row in rows:
        try:
            lines.append(_line(number, row, demonstrations_needed, author))
        except Invalid as exc:
            errors.append((number, exc.message))
    if len(rows) > MAX_LINES:
        errors.append((MAX_LINES + 1, f"At most {MAX_LINES} lines per import."))
    if not rows and not errors:
        errors.append((0, "The file has no lines to import."))
    if errors:
        raise ImportFailed(
            f"{len(errors)} line(s) have errors; nothing was imported.",
            errors=errors[:MAX_ERRORS_REPORTED],
        )
    return _write(project=project, lines=lines, author=author, source=source,
                  evaluation_share=evaluation_share)


def _decode(content: str | bytes) -> str:
    if isinstance(content, bytes):
        try:
            return content.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ImportFailed("The file is not UTF-8.", errors=[(0, str(exc))]) from None
    return content


def _rows_jsonl(content) -> list[tuple[int, object]]:
    rows = []
    for number, raw in enumerate(_decode(content).splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rows.append((number, json_value(raw, what="The line")))
        except Invalid as exc:
            rows.append((number, exc))
    return rows


def _rows_csv(content) -> list[tuple[int, object]]:
    reader = csv.DictReader(io.StringIO(_decode(content), newline=""))
    if not reader.fieldnames or "prompt" not in reader.fieldnames:
        raise ImportFailed("The CSV needs a header with a prompt column.",
                           errors=[(1, "No 'prompt' column in the header.")])
    rows = []
    try:
        for row in reader:
            if None in row:
                row = Invalid("More fields than the header names.")
            else:
                row = {k: v for k, v in row.items() if v not in ("", None)}
            rows.append((reader.line_num, row))
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit() (131,072 characters)
        raise ImportFailed("The CSV cannot be read; nothing was imported.",
                           errors=[(reader.line_num, f"Not CSV: {exc}.")]) from None
    return rows


def _line(number: int, row, default_needed: int, author) -> _Line:
    if isinstance(row, Invalid):
        raise row
    if not isinstance(row, dict):
        raise Invalid("Each line is an object.")
    turns = row.get("turns", row.get("messages"))
    if turns is None:
        if "prompt" not in row:
            found = ", ".join(f'"{key}"' for key in list(row)[:5]) or "nothing"
            raise Invalid(f'A line needs "prompt", "turns" or "messages"; this one has {found}.')
        turns = [{"role": "user", "content": clean_text(row["prompt"], field="prompt")}]
    response = row.get("response", row.get("demonstration"))
    if isinstance(turns, list) and turns and isinstance(turns[-1], dict) and (
        turns[-1].get("role") == "assistant"
    ):
        if response is not None:
            raise Invalid("Give the reply either as the last assistant turn or as response.")
        turns, response = turns[:-1], turns[-1].get("content")
    turns = clean_turns(turns, ends_with="user")
    if response is not None:
        response = clean_text(response, field="response").strip()
        if author is None:
            raise Invalid("A line with a response needs an author for the demonstration.")
    needed = whole_number(row.get("demonstrations_needed", default_needed), maximum=20)
    if needed is None:
        raise Invalid("demonstrations_needed is a whole number from 0 to 20.")
    return _Line(number, turns, response, needed, content_hash(turns),
                 evaluation=_flag(row.get("evaluation", False)))


def _flag(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "0", "false", "no"):
        return value.strip().lower() in ("1", "true", "yes")
    raise Invalid("evaluation is true or false.")


def _token(project: Project, turns: list[dict], response: str) -> str:
    key = json.dumps([project.pk, turns, response], sort_keys=True, ensure_ascii=False)
    return "imp-" + hashlib.sha256(key.encode()).hexdigest()[:60]


@transaction.atomic
def _write(*, project, lines: list[_Line], author, source, evaluation_share) -> ImportReport:
    report = ImportReport(lines=len(lines))
    known: dict[str, list[Prompt]] = {}  # hash -> prompts of the project, oldest first
    digests = list({line.digest for line in lines})
    for start in range(0, len(digests), 1000):
        for prompt in Prompt.objects.filter(
            project=project, content_hash__in=digests[start:start + 1000]
        ).order_by("id"):
            known.setdefault(prompt.content_hash, []).append(prompt)
    new_prompts, demo_targets = [], []  # (line, prompt) for each demonstration to write
    for line in lines:
        same = known.setdefault(line.digest, [])
        exact = next((p for p in same if p.turns == line.turns), None)
        if exact is not None:
            report.already_present += 1
            prompt = exact
        else:
            original = next((p for p in same if p.duplicate_of_id is None), None)
            prompt = Prompt(
                project=project, turns=line.turns, text=render_turns(line.turns),
                content_hash=line.digest, duplicate_of=original, source=source,
                author=None, demonstrations_needed=line.needed, is_evaluation=line.evaluation,
            )
            report.flagged_duplicates += original is not None
            same.append(prompt)
            new_prompts.append(prompt)
        if line.response is not None:
            demo_targets.append((line, prompt))
    tokens = {_token(project, line.turns, line.response): (line, p) for line, p in demo_targets}
    existing = set()
    token_list = list(tokens)
    for start in range(0, len(token_list), 1000):
        existing |= set(Demonstration.objects.filter(
            client_token__in=token_list[start:start + 1000]
        ).values_list("client_token", flat=True))
    wanted = [(token, line, p) for token, (line, p) in tokens.items() if token not in existing]
    added: dict[int, int] = {}  # existing prompt id -> demonstrations added
    for _, _, prompt in wanted:
        if prompt.pk is None:
            prompt.demonstrations_count += 1
        else:
            added[prompt.pk] = added.get(prompt.pk, 0) + 1
    Prompt.objects.bulk_create(new_prompts, batch_size=1000)
    report.created = len(new_prompts)
    report.prompt_ids = [p.pk for p in new_prompts]
    held_out = evaluation_share_pick([p.pk for p in new_prompts if not p.is_evaluation],
                                     share=evaluation_share, seed=project.pk)  # fmt: skip
    Prompt.objects.filter(pk__in=held_out).update(is_evaluation=True)
    report.evaluation = len(held_out) + sum(p.is_evaluation for p in new_prompts)
    Demonstration.objects.bulk_create(
        [
            Demonstration(prompt=prompt, author=author, client_token=token,
                          turns=[*line.turns, {"role": "assistant", "content": line.response}])
            for token, line, prompt in wanted
        ],
        batch_size=1000,
    )
    report.demonstrations = len(wanted)
    for prompt_id, n in added.items():
        Prompt.objects.filter(pk=prompt_id).update(
            demonstrations_count=F("demonstrations_count") + n
        )
    return report

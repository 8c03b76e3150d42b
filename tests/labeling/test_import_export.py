"""Import (JSONL, CSV; per-line report; all or nothing) and export (as of a moment, versioned)."""
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from labeling_factories import make_project, make_tasks, make_user, order_of

from labeling import exports
from labeling.errors import ImportFailed, Invalid
from labeling.importers import prompts_import
from labeling.models import Demonstration, ExportSnapshot, Prompt, Ranking
from labeling.services.exports import export_snapshot_create
from labeling.services.queue import ranking_claim_next
from labeling.services.rankings import ranking_submit

pytestmark = pytest.mark.django_db


def jsonl(*rows):
    return "\n".join(json.dumps(r) for r in rows) + "\n"


def test_jsonl_import_creates_prompts_dialogues_and_demonstrations():
    project, author = make_project(), make_user()
    content = jsonl(
        {"prompt": "What is 1+1?", "response": "2"},
        {"turns": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                   {"role": "user", "content": "Name a prime"}]},
        {"messages": [{"role": "user", "content": "Capital of France?"},
                      {"role": "assistant", "content": "Paris."}], "demonstrations_needed": 3},
    )
    report = prompts_import(project=project, content=content.encode(), format="jsonl",
                            author=author)
    assert (report.lines, report.created, report.demonstrations) == (3, 3, 2)
    first, dialogue, paris = Prompt.objects.order_by("id")
    assert first.demonstrations.get().turns[-1] == {"role": "assistant", "content": "2"}
    assert (first.demonstrations_count, first.demonstrations_needed) == (1, 1)
    assert dialogue.text.startswith("User: Hi") and dialogue.demonstrations_count == 0
    assert (paris.turns, paris.demonstrations_needed) == (
        [{"role": "user", "content": "Capital of France?"}], 3)


def test_reimporting_the_same_file_creates_nothing_and_near_duplicates_are_flagged():
    project, author = make_project(), make_user()
    content = jsonl({"prompt": "How to sort a list?", "response": "sorted(xs)"})
    prompts_import(project=project, content=content, format="jsonl", author=author)
    again = prompts_import(project=project, content=content, format="jsonl", author=author)
    assert (again.created, again.already_present, again.demonstrations) == (0, 1, 0)
    near = prompts_import(project=project, content=jsonl({"prompt": "how to SORT a list"}),
                          format="jsonl")
    assert near.flagged_duplicates == 1
    original, duplicate = Prompt.objects.order_by("id")
    assert duplicate.duplicate_of == original
    assert Demonstration.objects.count() == 1


def test_csv_import_with_quotes_newlines_and_optional_columns():
    project, author = make_project(), make_user()
    content = 'prompt,response,demonstrations_needed\n"Say ""hi""\nplease",hi,2\nJust ask,,\n'
    report = prompts_import(project=project, content=content, format="csv", author=author)
    assert (report.created, report.demonstrations) == (2, 1)
    quoted = Prompt.objects.order_by("id").first()
    assert quoted.text == 'Say "hi"\nplease' and quoted.demonstrations_needed == 2


def test_a_file_with_bad_lines_imports_nothing_and_reports_every_bad_line():
    project = make_project()
    content = "\n".join([
        json.dumps({"prompt": "fine"}),
        "{not json",
        json.dumps({"prompt": ""}),
        json.dumps({"prompt": "x" * 20_001}),
        json.dumps({"prompt": "needs author", "response": "r"}),
        json.dumps([1, 2]),
        json.dumps({"turns": [{"role": "assistant", "content": "a"}]}),
        json.dumps({"prompt": "n", "demonstrations_needed": -1}),
    ])
    with pytest.raises(ImportFailed) as error:
        prompts_import(project=project, content=content, format="jsonl")
    lines = dict(error.value.errors)
    assert sorted(lines) == [2, 3, 4, 5, 6, 7, 8]
    assert "Not JSON" in lines[2] and "too long" in lines[4] and "author" in lines[5]
    assert error.value.status == 400 and "nothing was imported" in error.value.message
    assert not Prompt.objects.exists()


@pytest.mark.parametrize(
    "content, fmt, message",
    [
        ("question\nhi\n", "csv", "prompt column"),
        ("prompt\nok\n\"a\",extra\n", "csv", "errors"),
        (b"\xff\xfe", "jsonl", "UTF-8"),
        ("", "jsonl", "errors"),
        ("x", "xml", "format"),
    ],
)
def test_unreadable_files_are_refused(content, fmt, message):
    with pytest.raises(Invalid, match=message):
        prompts_import(project=make_project(), content=content, format=fmt)
    assert not Prompt.objects.exists()


@pytest.fixture
def ranked_project():
    """Two tasks; the first ranked by two labelers (with a tie), the second by one."""
    project = make_project(k=4, overlap=2)
    author = make_user()
    prompts_import(project=project, format="jsonl", author=author,
                   content=jsonl({"prompt": "Q demo", "response": "A demo"}))
    t1, t2 = make_tasks(project, 2)
    a, b = make_user(), make_user()
    ids = [g[0] for g in order_of(t1)]
    for labeler, order in ((a, [[ids[0]], [ids[1], ids[2]], [ids[3]]]), (b, order_of(t1))):
        lease = ranking_claim_next(labeler=labeler, project=project)
        assert lease.task == t1
        ranking_submit(assignment_id=lease.pk, labeler=labeler, order=order)
    lease = ranking_claim_next(labeler=a, project=project)
    ranking_submit(assignment_id=lease.pk, labeler=a, order=order_of(t2, reverse=True))
    return project, t1, t2, ids


def test_exports_give_sft_messages_trl_comparisons_and_every_labelers_order(ranked_project):
    project, t1, t2, ids = ranked_project
    now = timezone.now()
    (sft,) = exports.sft_records(project=project, as_of=now)
    assert sft["messages"] == [{"role": "user", "content": "Q demo"},
                               {"role": "assistant", "content": "A demo"}]
    groups = list(exports.ranking_groups(project=project, as_of=now))
    assert [g["task_id"] for g in groups] == [t1.pk, t2.pk]
    g1 = groups[0]
    assert [c["id"] for c in g1["completions"]] == ids
    assert [r["order"] for r in g1["rankings"]] == [
        [[ids[0]], [ids[1], ids[2]], [ids[3]]], [[i] for i in ids]]
    assert g1["prompt"] == t1.prompt.turns
    pairs = list(exports.comparisons(project=project, as_of=now))
    assert len(pairs) == 5 + 6 + 6  # a tie implies no pair
    first = pairs[0]
    assert first["prompt"] == t1.prompt.turns
    assert first["chosen"] == [{"role": "assistant", "content": g1["completions"][0]["text"]}]
    assert first["rejected"][0]["role"] == "assistant"
    assert not any({p["chosen_id"], p["rejected_id"]} == {ids[1], ids[2]}
                   for p in pairs if p["ranking_id"] == g1["rankings"][0]["ranking_id"])


def test_an_export_as_of_a_moment_ignores_later_labels_and_its_id_reproduces_it(ranked_project):
    project, t1, t2, ids = ranked_project
    earlier = timezone.now()
    Ranking.objects.filter(task=t2).update(created_at=earlier + timedelta(minutes=5))
    snap = exports.snapshot_for(project=project, as_of=earlier)
    resolved_project, resolved_as_of = exports.snapshot_resolve(snap.id)
    assert (resolved_project, resolved_as_of) == (project, earlier)
    groups = list(exports.ranking_groups(project=project, as_of=resolved_as_of))
    assert [g["task_id"] for g in groups] == [t1.pk]
    record = export_snapshot_create(project=project, as_of=earlier)
    assert record.counts == {"sft": 1, "comparisons": 11, "rankings": 1}
    assert export_snapshot_create(project=project, as_of=earlier) == record
    assert exports.digest(exports.comparisons(project=project, as_of=earlier)) == (
        11, record.digests["comparisons"])
    for bad in ("nonsense", "x.1@2020", "x.999999@20200101T000000.000000Z"):
        with pytest.raises(Invalid if "999999" not in bad else Exception):
            exports.snapshot_resolve(bad)


def test_export_command_writes_jsonl_and_a_manifest_that_round_trips(ranked_project, tmp_path):
    project, *_ = ranked_project
    call_command("export_project", project=project.slug, out=tmp_path / "a")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    call_command("export_project", snapshot=manifest["snapshot_id"], out=tmp_path / "b")
    for kind in exports.KINDS:
        assert (tmp_path / "a" / f"{kind}.jsonl").read_bytes() == (
            tmp_path / "b" / f"{kind}.jsonl").read_bytes()
    lines = (tmp_path / "a" / "comparisons.jsonl").read_text().splitlines()
    assert len(lines) == manifest["counts"]["comparisons"] == 17
    assert set(json.loads(lines[0])) >= {"prompt", "chosen", "rejected"}
    assert ExportSnapshot.objects.count() == 1


def test_export_command_as_of_is_utc_unless_it_says_and_never_later_than_now(
    ranked_project, tmp_path
):
    from django.core.management.base import CommandError

    project, *_ = ranked_project
    call_command("export_project", project=project.slug, out=tmp_path / "a",
                 as_of="2024-01-01T12:00")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["as_of"] == "2024-01-01T12:00:00+00:00"
    for bad in ("2999-01-01T00:00Z", "2025-02-30T00:00", "0001-01-01T00:00+01:00", "nonsense"):
        with pytest.raises(CommandError, match="--as-of"):
            call_command("export_project", project=project.slug, out=tmp_path / "b", as_of=bad)
    assert ExportSnapshot.objects.count() == 1


def test_import_then_export_round_trips_the_demonstrations(tmp_path):
    project = make_project()
    make_user("writer")
    rows = [{"prompt": f"Question {i}?", "response": f"Answer {i}."} for i in range(30)]
    path = tmp_path / "in.jsonl"
    path.write_text(jsonl(*rows))
    call_command("import_prompts", str(path), project=project.slug, author="writer")
    out = [
        {"prompt": r["messages"][0]["content"], "response": r["messages"][1]["content"]}
        for r in exports.sft_records(project=project, as_of=timezone.now())
    ]
    assert out == rows
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt\n\n\"\"\n")
    with pytest.raises(CommandError):
        call_command("import_prompts", str(bad), project=project.slug)


def test_load_demo_project_is_idempotent():
    call_command("load_demo_project", author="demo", ranking_tasks=5)
    call_command("load_demo_project", author="demo", ranking_tasks=5)
    prompts = Prompt.objects.filter(project__slug="python-stdlib")
    assert prompts.count() == 320
    assert Demonstration.objects.filter(author__username="demo").count() == 320
    assert prompts.filter(ranking_tasks__isnull=False).count() == 5
    labeler = make_user()
    assert ranking_claim_next(labeler=labeler) is not None

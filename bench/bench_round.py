"""One demo round of the loop on this machine, timed by stage, plus the push-back throughput and
the delay between a ranking being submitted and being in the next reward-model run's data.

    python bench/bench_round.py                  # a fresh SQLite database in a temporary folder
    python bench/bench_round.py --preset tiny    # our tiny GPT, pretrained first
    python bench/bench_round.py --keep data/bench   # keep the database and checkpoints there
    OMP_NUM_THREADS=1 python bench/bench_round.py   # when other jobs share the cores

torch uses every core by default: the figure for an idle machine. On cores shared with other
work, one thread per process is faster than several fighting over them.

The round is `manage.py run_demo_round` (import SmolLM2 or pretrain -> SFT -> sample ->
simulated ranking -> reward model -> PPO -> evaluation, in this process). The delay is measured
the way it happens: a ranking submitted through the labeling service, then a reward-model run
created at once; its dataset snapshot either holds the ranking or not. There is no export step
in between.
"""

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", help="folder for the database and artifacts (default: temporary)")
    parser.add_argument("--preset", help="lora (SmolLM2, the default) or tiny: run_demo_round's")
    parser.add_argument("--pretrain-steps", type=int, help="default: run_demo_round's")
    parser.add_argument("--ppo-iterations", type=int, help="default: run_demo_round's")
    args = parser.parse_args()

    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-round-"))
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ["DATA_DIR"] = str(folder)
    os.environ.pop("DATABASE_URL", None)  # never a shared database
    os.environ["DJANGO_SETTINGS_MODULE"] = "webapp.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    out = io.StringIO()
    started = time.monotonic()
    given = {"preset": args.preset, "pretrain_steps": args.pretrain_steps,
             "ppo_iterations": args.ppo_iterations}  # fmt: skip
    call_command("run_demo_round", **{k: v for k, v in given.items() if v is not None},
                 stdout=out)  # fmt: skip
    print(out.getvalue())
    print(f"whole round (with setup): {time.monotonic() - started:.1f} s")
    print(f"ranking -> usable by the next reward-model run: {ranking_delay() * 1000:.1f} ms")
    print(f"data in {folder}")


def ranking_delay() -> float:
    """Seconds from a ranking's submit to a reward run whose snapshot holds it."""
    from django.contrib.auth import get_user_model

    from labeling.models import Project
    from labeling.services.demonstrations import prompt_create
    from labeling.services.queue import ranking_claim_next
    from labeling.services.ranking_tasks import ranking_tasks_create
    from labeling.services.rankings import ranking_submit
    from training.selectors import latest_version
    from training.services.runs import run_create

    project = Project.objects.get(slug="python-stdlib")
    prompt = prompt_create(project=project, source="imported",
                           turns=[{"role": "user", "content": f"What does x{time.time()} do?"}])
    [task] = ranking_tasks_create(project=project, batch_key=f"bench-{prompt.pk}",
                                  prompt_completions=[
        (prompt.pk, [{"text": f"reply {i}"} for i in range(project.k)])])  # fmt: skip
    labeler, _ = get_user_model().objects.get_or_create(username="bench-labeler")
    assignment = ranking_claim_next(labeler=labeler, project=project)
    while assignment.task_id != task.pk:  # older open tasks first: rank them too
        ids = list(assignment.task.items.values_list("completion_id", flat=True))
        ranking_submit(assignment_id=assignment.pk, labeler=labeler, order=[[i] for i in ids])
        assignment = ranking_claim_next(labeler=labeler, project=project)
    ids = list(task.items.values_list("completion_id", flat=True))
    started = time.monotonic()
    ranking = ranking_submit(assignment_id=assignment.pk, labeler=labeler, order=[[i] for i in ids])
    run = run_create(kind="reward", project=project, enqueue_it=False,
                     input_model=latest_version(kinds=["sft"], project=project))  # fmt: skip
    assert run.rankings.filter(pk=ranking.pk).exists(), "the ranking is not in the snapshot"
    return time.monotonic() - started


if __name__ == "__main__":
    main()

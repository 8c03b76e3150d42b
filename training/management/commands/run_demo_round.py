"""`manage.py run_demo_round`: one full round of the loop, headless, with simulated labelers.

    python manage.py run_demo_round                # SmolLM2-135M-Instruct, LoRA, in this process
    python manage.py run_demo_round --preset tiny  # our tiny GPT, pretrained first (~12 min CPU)
    python manage.py run_demo_round --workers      # hand each run to the Celery workers instead
    python manage.py run_demo_round --method dpo   # DPO on the rankings instead of RM + PPO
    python manage.py run_demo_round --rounds 2 --method dpo ppo  # round 2 ranks the new policy

The base model is the shipped SmolLM2-135M-Instruct (imported once; every stage trains LoRA
adapters, the `lora` preset), or with `--preset tiny` a tiny GPT pretrained on the
standard-library docs (or the last one) -> SFT on the demo project's demonstrations
-> sample K replies per prompt and push them as ranking tasks -> simulated labelers rank them
by a visible preference (`--rule`, see `training.demo.rules`; `--noise` and `--bradley-terry`
(`--bt-ties`: alike replies tied) make them as inconsistent as people, see
`training.demo.labelers`) -> reward model -> PPO (or with
`--method dpo` one DPO run on the rankings, and no reward model) -> evaluation:
the reward model's held-out accuracy beside the longer-reply baseline, the KL, and, on the
training prompts and on held-out questions, how often the SFT model, the new policy and the
best-of-n baseline (`--best-of` SFT replies, the reward model keeps one) follow the rule, their
win rates over SFT and their rewards. The held-out questions (`--held-out`, a seeded fifth of the
demo file, `training.demo.split`) are the project's evaluation prompts, so no run trains on them
and PPO reports its reward on them as it goes (`training.ml.ppo_heldout`).
With `--rounds N` the loop goes round after round as in InstructGPT: each round samples the last
round's policy for its ranking tasks, its reward model or DPO run trains on every ranking of the
project so far, its policy step starts from that policy (PPO's KL still to the SFT model; DPO's
reference is the policy it starts from: iterated DPO), and its new policy is evaluated against
SFT.
Every step is a real run (rows, snapshots, lineage); the timings per stage are printed at the end.
"""

import logging
import socket
import time

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from labeling.management.commands.load_demo_project import DEMO_FILE
from labeling.models import Project
from labeling.services.projects import project_update
from training import worker
from training.demo.labelers import SimulatedLabeler
from training.demo.report import labeler_habits, round_report
from training.demo.rules import PREFERENCES
from training.demo.split import read_demo_rows, split_demo_rows
from training.errors import Invalid
from training.ml.shipped import SHIPPED_NAME, shipped_model_path
from training.models import ModelVersion, Round, TrainingRun
from training.presets import clean_config
from training.selectors import round_open
from training.services.model_versions import model_version_import, model_version_register
from training.services.rounds import round_advance, round_start
from training.services.runs import run_create

DEMO_SLUG = "python-stdlib"
SIMULATED = ("sim-labeler-1", "sim-labeler-2")
# The round's sizes per preset (each flag below overrides its value). tiny: measured with the
# `returns` rule (share of replies following it; SFT 41-42%): PPO 40 x 16 prompts at 1e-5 ->
# 56%, at 3e-5 -> 76% (800-step base) and 93% (600-step base, 86 s); 40 x 32 at 2e-5 -> 92-97%,
# twice the time; 5e-5 harmed the `names` rule even with the rule itself as the reward.
# lora: a 135M model on a CPU, sized so the round takes minutes, not hours. max_new_tokens None:
# each run kind's preset value (and 32 in the evaluation).
DEMO_SIZES = {
    "tiny": dict(sft_epochs=12, sft_lr=1e-3, sample_prompts=320, ppo_iterations=40,
                 ppo_prompts=16, ppo_lr=3e-5, eval_prompts=320, max_new_tokens=None),
    "lora": dict(sft_epochs=1, sft_lr=2e-4, sample_prompts=64, ppo_iterations=8,
                 ppo_prompts=8, ppo_lr=5e-5, eval_prompts=64, max_new_tokens=48),
}  # fmt: skip
METHODS = ("ppo", "dpo")
STAGES = ("sft", "sample", "reward", "ppo", "dpo")  # the kinds --set may name


class Command(BaseCommand):
    help = "Run one round of the loop headless with simulated labelers, and report the results."

    def add_arguments(self, parser):
        parser.add_argument("--project", default=DEMO_SLUG, help="project slug (default: the demo)")
        parser.add_argument("--preset", default="lora", choices=sorted(DEMO_SIZES),
                            help=f"lora: {SHIPPED_NAME} with LoRA adapters; tiny: our tiny GPT, "
                                 "pretrained first")  # fmt: skip
        # 600, not the pretrain default of 800, so that a first round, pretraining included,
        # stays well inside 15 minutes on a slow 2-core machine (an AMD EPYC VM: 525 s for 600
        # steps). The `returns` rule does not need the better copying of names 800 steps give.
        parser.add_argument("--pretrain-steps", type=int, default=600)
        parser.add_argument(
            "--fresh-base", action="store_true", help="pretrain even if a base exists"
        )
        parser.add_argument("--sft-epochs", type=int)
        parser.add_argument("--sft-lr", type=float)
        parser.add_argument("--sample-prompts", type=int)
        parser.add_argument("--rule", default="returns", choices=sorted(PREFERENCES),
                            help="what the simulated labelers prefer")  # fmt: skip
        parser.add_argument("--noise", type=float, default=0.0,
                            help="share of neighbouring places swapped at random")  # fmt: skip
        parser.add_argument("--bradley-terry", type=float, nargs="?", const=2.0, metavar="SCALE",
                            help="sample rankings from the scores (P(a above b) = "
                                 "sigmoid(SCALE * (s_a - s_b)), SCALE 2 when not given) "
                                 "instead of sorting by them")  # fmt: skip
        parser.add_argument("--bt-ties", action="store_true",
                            help="with --bradley-terry: replies alike under the preference "
                                 "stay tied (the labelers may mark a tie) instead of being "
                                 "ordered at random")  # fmt: skip
        parser.add_argument("--method", default=["ppo"], choices=METHODS, nargs="+",
                            help="the policy step: a reward model then PPO, or DPO on the "
                                 "rankings; with --rounds one per round, the last repeated "
                                 "(e.g. --rounds 2 --method dpo ppo)")  # fmt: skip
        parser.add_argument("--rounds", type=int, default=1,
                            help="rounds in a row, each sampling the last one's policy for its "
                                 "ranking tasks and training on all the project's rankings; "
                                 "each is evaluated against SFT")  # fmt: skip
        parser.add_argument("--ppo-iterations", type=int)
        parser.add_argument("--ppo-prompts", type=int, help="prompts per iteration")
        parser.add_argument("--ppo-lr", type=float)
        parser.add_argument("--max-new-tokens", type=int,
                            help="reply length: sampling, PPO, evaluation")  # fmt: skip
        parser.add_argument(
            "--set", action="append", default=[], metavar="KIND.FIELD=VALUE",
            help="any other setting of a stage's run, e.g. --set ppo.kl_coef=0.02 (repeatable)",
        )  # fmt: skip
        parser.add_argument("--eval-prompts", type=int,
                            help="prompts the policy and SFT answer for the win rate")  # fmt: skip
        parser.add_argument("--held-out", type=float, default=0.2,
                            help="share of the demo's questions kept out of the project and "
                                 "evaluated apart (0: none)")  # fmt: skip
        parser.add_argument("--best-of", type=int, default=4,
                            help="n of the best-of-n baseline (SFT replies the reward model "
                                 "picks from) the policy is reported against")  # fmt: skip
        parser.add_argument("--sample-mix", choices=("base", "sft"),
                            help="a second model writes part of each ranking task's replies "
                                 "(--set sample.mix_replies=N, 1 when not given): the base "
                                 "model, or from a policy the SFT model")  # fmt: skip
        parser.add_argument("--k", type=int, default=None,
                            help="replies per ranking task (default: the project's)")  # fmt: skip
        parser.add_argument("--base", help="a model directory to use as base (no pretraining)")
        parser.add_argument(
            "--workers",
            action="store_true",
            help="hand runs to the Celery workers and wait (default: run here)",
        )
        parser.add_argument("--timeout", type=int, default=3600, help="seconds to wait per run")

    def handle(self, *args, **options):
        from training.demo import headless as demo

        rule = PREFERENCES[options["rule"]]
        try:  # checked now, not after the minutes of SFT and sampling
            simulated = [SimulatedLabeler(rule, noise=options["noise"], seed=seed,
                                          bt_scale=options["bradley_terry"],
                                          bt_ties=options["bt_ties"])
                         for seed in range(len(SIMULATED))]  # fmt: skip
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["best_of"] < 1:
            raise CommandError(f"--best-of must be at least 1; got {options['best_of']}")
        if options["rounds"] < 1:
            raise CommandError(f"--rounds must be at least 1; got {options['rounds']}")
        if isinstance(options["method"], str):  # call_command(method="dpo")
            options["method"] = [options["method"]]
        if not 0.0 <= options["held_out"] <= 0.5:
            raise CommandError(f"--held-out is a share from 0 to 0.5; got {options['held_out']}")
        preset = options["preset"]
        for name, value in DEMO_SIZES[preset].items():
            if options[name] is None:
                options[name] = value
        self.options, self.timings, self.stage_suffix = options, {}, ""
        self.overrides = overrides(options["set"])  # checked before anything is loaded or run
        logging.getLogger("rustbpe").setLevel(logging.WARNING)  # one line per merge otherwise
        _, held_out = split_demo_rows(read_demo_rows(DEMO_FILE), options["held_out"])
        call_command("load_demo_project", slug=options["project"], evaluation_share=0.0,
                     stdout=self.stdout)  # fmt: skip
        project = Project.objects.get(slug=options["project"])
        marked = demo.hold_out(project, held_out)
        self.stdout.write(f"{marked} prompts newly held out as evaluation prompts")
        if options["k"] and options["k"] != project.k:
            project = project_update(project=project, k=options["k"])
        base = self.base_model(project, options)
        sft = self.stage(
            "sft",
            "sft",
            project=project,
            input_model=base,
            config={
                "epochs": options["sft_epochs"],
                "lr": options["sft_lr"],
                "eval_every": 0,
                "checkpoint_every": 200,
                **self.overrides.get("sft", {}),
            },
        ).output_model
        users = get_user_model().objects
        labelers = {users.get_or_create(username=name, defaults={"password": "!"})[0]: labeler
                    for name, labeler in zip(SIMULATED, simulated, strict=True)}  # fmt: skip
        names = demo.function_names(project)
        sets = {"training prompts": demo.questions(project, evaluation=False,
                                                   limit=options["eval_prompts"]),
                "held-out prompts": demo.questions(project, evaluation=True)}  # fmt: skip
        policy = sft
        for number in range(1, options["rounds"] + 1):
            methods = options["method"]
            method = methods[min(number, len(methods)) - 1]
            self.stage_suffix = f" (round {number})" if options["rounds"] > 1 else ""
            policy = self.play_round(project, sft, policy, method, rule, labelers, names, sets)

    def play_round(self, project, sft, policy, method, rule, labelers, names, sets):
        """One round from `policy` (round 1: the SFT model), evaluated against `sft` and
        reported; returns the round's new policy."""
        from training.demo import headless as demo

        options = self.options
        round_ = self.open_round(project, policy, options, method)
        sample = self.finish("sample", round_.sample_run)
        round_ = self.advance(round_)

        started = time.monotonic()
        ranked = demo.simulate_labelers(project, labelers, names=names)
        self.timings["ranking (simulated)" + self.stage_suffix] = time.monotonic() - started
        self.stdout.write(f"simulated labelers submitted {ranked} rankings")

        round_ = self.advance(round_)  # the round's tasks are ranked: its policy step starts
        rm = None
        if method == "ppo":
            rm = self.finish("reward", round_.reward_run).output_model
            round_ = self.advance(round_)
        made = self.finish(method, round_.policy_run)
        round_ = self.advance(round_)

        started = time.monotonic()
        results = {  # only questions whose reference names a function count
            title: demo.evaluate(
                sft=sft, policy=made.output_model, reward_model=rm, prompts=prompts, rule=rule,
                names=names, max_new_tokens=options["max_new_tokens"] or 32,
                best_of=options["best_of"],
            ) if any(pid in names for pid, _ in prompts) else None
            for title, prompts in sets.items()
        }  # fmt: skip
        self.timings["evaluation" + self.stage_suffix] = time.monotonic() - started
        self.stdout.write(round_report(
            rule=rule, labelers=labeler_habits(options["noise"], options["bradley_terry"],
                                               options["bt_ties"]),
            sample=sample, rm=rm, made=made, results=results, round_=round_,
            timings=self.timings,
        ))  # fmt: skip
        return made.output_model

    def base_model(self, project, options) -> ModelVersion:
        """`--base`, else the preset's: the shipped model (imported the first time) or the
        project's last pretrained tiny base (pretrained now when there is none)."""
        if options["base"]:
            return model_version_register(checkpoint_dir=options["base"], name="demo-base")
        if options["preset"] == "lora":
            base = ModelVersion.objects.filter(project=project, name=SHIPPED_NAME).first()
            if base is None:
                base = model_version_import(path=str(shipped_model_path()), name=SHIPPED_NAME,
                                            project=project)  # fmt: skip
            return base
        pretrained = ModelVersion.objects.filter(project=project, kind="base", run__kind="pretrain")
        base = None if options["fresh_base"] else pretrained.first()
        if base is not None:
            self.stdout.write(f"reusing base model {base.name} (--fresh-base to pretrain again)")
            return base
        return self.stage(
            "pretrain", "pretrain", project=project, config={"steps": options["pretrain_steps"]}
        ).output_model

    def open_round(self, project, policy, options, method) -> Round:
        """A round of the project from `policy` (the new SFT model, or the last round's policy),
        not chained to a next one: the demo opens the next itself."""
        if (open_round := round_open(project=project)) is not None:
            raise CommandError(
                f"Round {open_round.number} of {project.slug} is still open ({open_round.stage}): "
                f"finish it with `manage.py continue_round --project {project.slug}`."
            )
        length = {"max_new_tokens": options["max_new_tokens"]} if options["max_new_tokens"] else {}
        config = {
            "preset": options["preset"],
            "chain": False,
            "sample": {"num_prompts": options["sample_prompts"], **length},
            "reward": {},  # the preset's
            "ppo": {
                "iterations": options["ppo_iterations"],
                "prompts_per_iteration": options["ppo_prompts"],
                "lr": options["ppo_lr"],
                **length,
            },
            "method": method,
            "dpo": {},  # the preset's
            "sample_mix": options["sample_mix"] or "",
        }
        for kind, values in self.overrides.items():
            if kind in config:
                config[kind].update(values)
        round_ = round_start(project=project, policy=policy, config=config,
                             enqueue_it=self.options["workers"])  # fmt: skip
        self.stdout.write(f"round {round_.number} from {policy.name}")
        return round_

    def advance(self, round_) -> Round:
        """Move the round on (with workers, a finished run has done so already)."""
        run = round_.current_run
        if self.options["workers"] and run is not None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the worker moves it on after the run
                round_.refresh_from_db()
                if round_.current_run != run:
                    break
                time.sleep(0.5)
        try:
            return round_advance(round_id=round_.pk, enqueue_it=self.options["workers"])
        except Invalid as exc:  # e.g. the simulated labelers tied every reply: nothing to learn
            raise CommandError(f"round {round_.number} cannot go on: {exc}") from None

    def stage(self, label, kind, **kwargs) -> TrainingRun:
        run = run_create(kind=kind, preset=self.options["preset"],
                         enqueue_it=self.options["workers"], **kwargs)  # fmt: skip
        return self.finish(label, run)

    def finish(self, label, run) -> TrainingRun:
        """Run `run` here, or wait for a worker to; stop the demo if it did not succeed."""
        started = time.monotonic()
        self.stdout.write(f"{label}: run #{run.pk} ({run.snapshot_id or 'no dataset'})")
        if self.options["workers"]:
            deadline = time.monotonic() + self.options["timeout"]
            while not run.is_finished and time.monotonic() < deadline:
                time.sleep(1)
                run.refresh_from_db()
        else:
            worker.execute(run_id=run.pk, key=str(run.key), worker=f"demo@{socket.gethostname()}")
            run.refresh_from_db()
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"{label} run #{run.pk} {run.status}: {run.error or 'timed out'}")
        seconds = self.timings[label + self.stage_suffix] = time.monotonic() - started
        shown = ", ".join(f"{k} {v:.4g}" for k, v in run.metrics.items()
                          if isinstance(v, float) and k in SHOWN)  # fmt: skip
        made = f" -> {run.output_model.name}" if run.output_model else ""
        self.stdout.write(f"  done in {seconds:.1f} s{made}  {shown}")
        return run


def overrides(pairs: list[str]) -> dict[str, dict[str, str]]:
    """["ppo.kl_coef=0.02", ...] -> {"ppo": {"kl_coef": "0.02"}} (typed by the run's presets).
    Each is checked against its kind's declared settings before anything runs: a typo or a
    value out of bounds stops the command at once, naming the setting."""
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        kind, dot, field = name.partition(".")
        if not (sep and dot and kind in STAGES):
            raise CommandError(f"--set takes KIND.FIELD=VALUE (KIND one of {', '.join(STAGES)}); "
                               f"got {pair!r}")  # fmt: skip
        try:
            clean_config(kind, {field: value})
        except Invalid as exc:
            raise CommandError(f"--set {pair}: {exc}") from None
        out.setdefault(kind, {})[field] = value
    return out


SHOWN = {"loss", "val_loss", "val_accuracy", "score", "kl", "completions_per_second"}

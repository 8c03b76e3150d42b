"""The checklist on /training/: a project's first steps (base model, SFT, first round), each
with whether it is done and, if not, what it still needs. Read-only (a selector)."""
from dataclasses import dataclass

from training.models import Round
from training.selectors import latest_version
from training.services.snapshots import demonstrations_of, minimum


@dataclass
class Step:
    title: str
    done: bool
    detail: str


def first_steps(*, project, now) -> list[Step]:
    base = latest_version(kinds=["base"], project=project)
    sft = latest_version(kinds=["sft", "policy"], project=project)
    demos, need = demonstrations_of(project, now).count(), minimum("demonstrations")
    rounds = Round.objects.filter(project=project).count()
    return [
        Step("A base model", base is not None,
             f"{base.name} is registered." if base else
             "Import one (admin → Model versions → Import a model, or `manage.py import_model "
             "--shipped --project " + project.slug + "`), or start a pretraining run below."),
        Step("SFT on the demonstrations", sft is not None,
             f"{sft.name} is trained." if sft else
             f"Needs a base model and at least {need} demonstrations: the project has {demos}"
             + (" (enough: start SFT on the project's page)." if demos >= need else
                "; labelers write them under Label → Write a reply.")),
        Step("The first round (sample, rank, reward model, PPO)", rounds > 0,
             f"{rounds} round{'s' if rounds != 1 else ''} so far." if rounds else
             "Needs an SFT model; then “Start a round” on the project's page samples replies "
             "for people to rank and goes on by itself as the rankings come in."),
    ]

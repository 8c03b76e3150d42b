"""ChatGPT's comparison data: "we took conversations that AI trainers had with the chatbot,
randomly selected a model-written message, sampled several alternative completions, and had
AI trainers rank them."

`chat_comparisons_create` picks model-written messages and queues K-1 alternatives for each
from the same context (the message's own model version, or a mix staff choose). When the last
alternative is written, `comparison_collect` (a Celery task the worker calls back) shuffles the
K replies into one ranking task whose prompt is the conversation up to the user's message.
"""

import random

from django.db import transaction

from chat.models import ChatComparison, Message
from chat.services.conversations import branch, chat_settings, turns_of
from labeling.errors import Invalid
from labeling.models import Project, Prompt
from labeling.services.demonstrations import prompt_create
from labeling.services.ranking_tasks import ranking_tasks_create
from labeling.validation import EMPTY_REPLY, MAX_TURNS
from training.models import Generation, ModelVersion
from training.services.generations import CHAT_KINDS, generation_request

COLLECT_TASK = "chat.comparison_collect"
MAX_PER_REQUEST = 100


def comparable_messages(project: Project):
    """Finished model-written messages of the project's chats not yet chosen for a comparison."""
    return Message.objects.filter(
        conversation__project=project, role=Message.Role.ASSISTANT,
        generation__status=Generation.Status.DONE, comparisons__isnull=True,
    ).exclude(generation__text="")  # fmt: skip


@transaction.atomic
def chat_comparisons_create(
    *, project: Project, requested_by, count: int = 1, messages: list[Message] | None = None,
    model_versions: list[ModelVersion] | None = None, seed: int | None = None,
) -> list[ChatComparison]:  # fmt: skip
    """Comparisons for `messages` (or `count` messages picked at random), alternatives from
    `model_versions` in turn (default: each message's own version)."""
    if not 1 <= count <= MAX_PER_REQUEST:
        raise Invalid(f"Choose between 1 and {MAX_PER_REQUEST} messages.")
    for version in model_versions or []:
        if version.kind not in CHAT_KINDS or version.project_id not in (None, project.pk):
            raise Invalid(f"{version.name} cannot write alternatives for {project.name}.")
    rng = random.Random(seed)
    candidates = comparable_messages(project).select_related("generation__model_version")
    if messages is None:
        ids = list(candidates.values_list("id", flat=True))
        if not ids:
            raise Invalid("No model-written chat messages are left to compare in this project.")
        messages = list(candidates.filter(id__in=rng.sample(ids, min(count, len(ids)))))
    elif len(messages) != candidates.filter(id__in=[m.pk for m in messages]).count():
        raise Invalid("Only finished model messages of this project's chats, not compared "
                      "before, can be compared.")  # fmt: skip
    sampling = chat_settings(project).sampling()
    created = []
    for message in messages:
        context = turns_of(branch(message.parent))
        comparison = ChatComparison.objects.create(message=message, requested_by=requested_by)
        own = message.generation.model_version
        versions = model_versions or [own]
        alternatives = [
            generation_request(
                model_version=versions[i % len(versions)], turns=context,
                sampling={**sampling, "seed": rng.randrange(2**31)}, on_done=COLLECT_TASK,
            )  # fmt: skip
            for i in range(project.k - 1)
        ]
        comparison.alternatives.set(alternatives)
        created.append(comparison)
    return created


@transaction.atomic
def comparison_collect(generation_id: int) -> ChatComparison | None:
    """Called as each alternative finishes; the last one turns the comparison into a ranking
    task (once: the row is locked, and the task's batch key makes a retry create nothing)."""
    comparison = (ChatComparison.objects.select_for_update()
                  .filter(alternatives__id=generation_id).first())  # fmt: skip
    if comparison is None or comparison.status != ChatComparison.Status.GENERATING:
        return comparison
    alternatives = list(comparison.alternatives.select_related("model_version").order_by("id"))
    if any(g.status not in Generation.FINISHED for g in alternatives):
        return comparison
    failed = [g for g in alternatives if g.status == Generation.Status.FAILED]
    if failed:
        comparison.status, comparison.error = ChatComparison.Status.FAILED, failed[0].error
        comparison.save(update_fields=["status", "error"])
        return comparison
    message = comparison.message
    context = turns_of(branch(message.parent))
    # A prompt holds at most MAX_TURNS turns: a longer chat keeps its latest exchanges.
    context = context[-(MAX_TURNS - 1 if MAX_TURNS % 2 == 0 else MAX_TURNS) :]
    project = message.conversation.project
    prompt = prompt_create(
        project=project, turns=context, source=Prompt.Source.CHAT,
        author=message.conversation.labeler, demonstrations_needed=0,
    )  # fmt: skip
    replies = [_completion(message.generation, original=True)]
    replies += [_completion(g) for g in alternatives]
    random.Random(comparison.pk).shuffle(replies)  # the original's place tells nothing
    [task] = ranking_tasks_create(project=project, prompt_completions=[(prompt.pk, replies)],
                                  batch_key=f"chat-comparison-{comparison.pk}")  # fmt: skip
    comparison.status, comparison.ranking_task = ChatComparison.Status.CREATED, task
    comparison.save(update_fields=["status", "ranking_task"])
    return comparison


def comparisons_collect_finished() -> int:
    """The periodic sweep: comparisons whose alternatives are all written but whose callback
    never ran (the broker was unreachable when the last one finished). Returns how many moved."""
    moved = 0
    unfinished = [Generation.Status.QUEUED, Generation.Status.RUNNING]
    waiting = ChatComparison.objects.filter(status=ChatComparison.Status.GENERATING)
    for comparison in waiting.exclude(alternatives__status__in=unfinished):
        first = comparison.alternatives.order_by("id").first()
        if first is not None and comparison_collect(first.pk).status != comparison.status:
            moved += 1
    return moved


def _completion(generation: Generation, *, original: bool = False) -> dict:
    version = generation.model_version
    return {
        "text": generation.text or EMPTY_REPLY, "model_label": version.name,
        "model_version_id": version.pk,
        "sampling": {**generation.sampling, "generation": str(generation.key),
                     "finish_reason": generation.finish_reason, "chat_original": original},
    }  # fmt: skip

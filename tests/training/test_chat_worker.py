"""The live model end to end: a real inference worker on the real Redis and test database."""

import pytest
from django.contrib.auth import get_user_model
from training_helpers import make_project
from waiting import wait_for

from chat.models import ChatComparison
from chat.services.comparisons import chat_comparisons_create
from chat.services.conversations import chat_models_allow, conversation_start, message_send
from labeling.models import Prompt, Ranking, RankingTask
from labeling.services.queue import ranking_claim_next
from labeling.services.rankings import ranking_submit
from training.inference import channel
from training.inference.worker import fit_prompt
from training.jobs.common import load_version
from training.jobs.reward import ranking_records
from training.ml.reward_data import ranking_examples
from training.ml.sampling import SampleConfig, generate
from training.models import Generation
from training.services.generations import generation_request

pytestmark = pytest.mark.django_db(transaction=True)

GREEDY = {"temperature": 0, "max_new_tokens": 12}
QUESTIONS = ["What does len return?", "How do I sort a list?", "What is a dict?",
             "Explain zip in one line, please, with an example of its use."]  # fmt: skip


def events_until_done(r, key, timeout=60):
    seen, after = [], "0"

    def finished():
        nonlocal after
        for event_id, fields in channel.read_events(r, key, after, block_ms=200):
            after = event_id
            seen.append((fields["type"], fields["text"]))
        return seen and seen[-1][0] in ("done", "error")

    assert wait_for(finished, timeout=timeout), f"no done event; got {seen}"
    return seen


def ask(version, text, labeler=None, **sampling):
    return generation_request(model_version=version, user=labeler,
                              turns=[{"role": "user", "content": text}],
                              sampling={**GREEDY, **sampling})  # fmt: skip


def test_a_reply_streams_in_order_and_ends_with_done(chat_version, inference_worker,
                                                     inference_redis, labeler):  # fmt: skip
    inference_worker()
    generation = ask(chat_version, QUESTIONS[0], labeler)
    events = events_until_done(inference_redis, generation.key)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"token"}
    streamed = "".join(text for _, text in events[:-1])
    generation.refresh_from_db()
    assert generation.status == Generation.Status.DONE
    assert streamed.strip() == generation.text == events[-1][1]
    assert generation.completion_tokens >= 1 and generation.first_token_at is not None
    assert generation.finish_reason in ("stop", "length")


def test_greedy_replies_are_the_same_batched_as_alone(chat_version, inference_worker,
                                                      inference_redis):  # fmt: skip
    generations = [ask(chat_version, q) for q in QUESTIONS]  # queued together, served together
    inference_worker()
    for g in generations:
        events_until_done(inference_redis, g.key)
    model, tokenizer = load_version(chat_version, "cpu")
    for g in generations:
        g.refresh_from_db()
        ids, _, max_new = fit_prompt(tokenizer, g.turns, context=model.config.block_size,
                                     max_new_tokens=GREEDY["max_new_tokens"])  # fmt: skip
        alone = generate(model, [ids], SampleConfig(max_new_tokens=max_new, temperature=0),
                         stop_id=tokenizer.end_id, pad_id=tokenizer.pad_id)  # fmt: skip
        assert g.text == tokenizer.decode(alone.responses[0]).strip(), g.turns


def test_requests_made_while_no_worker_runs_are_served_when_one_starts(
    chat_version, inference_worker, inference_redis
):
    generation = ask(chat_version, QUESTIONS[1])
    assert channel.workers(inference_redis) == []
    assert Generation.objects.get(pk=generation.pk).status == Generation.Status.QUEUED
    inference_worker()
    assert events_until_done(inference_redis, generation.key)[-1][0] == "done"


def test_a_chat_message_becomes_a_ranking_task_with_the_conversation_as_its_prompt(
    chat_version, inference_worker, inference_redis, worker_factory, labeler, staff
):
    project = make_project(k=4)
    chat_models_allow(project=project, versions=[chat_version])
    inference_worker()
    worker_factory(queues=("default",))  # runs the comparison's callback
    conversation = conversation_start(labeler=labeler, project=project,
                                      model_version=chat_version, text=QUESTIONS[0])  # fmt: skip
    first = conversation.current.generation
    events_until_done(inference_redis, first.key)
    conversation.refresh_from_db()
    message_send(conversation=conversation, text=QUESTIONS[1])
    conversation.refresh_from_db()
    chosen = conversation.current
    events_until_done(inference_redis, chosen.generation.key)
    chosen.generation.refresh_from_db()

    [comparison] = chat_comparisons_create(project=project, requested_by=staff,
                                           messages=[chosen], seed=1)  # fmt: skip
    assert wait_for(lambda: ChatComparison.objects.get(pk=comparison.pk).status
                    == ChatComparison.Status.CREATED, timeout=90)  # fmt: skip

    task = RankingTask.objects.get(project=project)
    first.refresh_from_db()
    context = [{"role": "user", "content": QUESTIONS[0]},
               {"role": "assistant", "content": first.text or "(empty reply)"},
               {"role": "user", "content": QUESTIONS[1]}]  # fmt: skip
    assert task.prompt.turns == context and task.prompt.source == Prompt.Source.CHAT
    texts = [c.text for c in task.completions.all()]
    assert len(texts) == project.k
    assert (chosen.generation.text or "(empty reply)") in texts

    # The reward model reads the whole conversation before each reply, and scores the reply.
    ranker = get_user_model().objects.create_user("rita")  # not the chat's own author
    assignment = ranking_claim_next(labeler=ranker, project=project)
    assert assignment.task == task
    ids = list(task.items.order_by("position").values_list("completion_id", flat=True))
    ranking_submit(assignment_id=assignment.pk, labeler=ranker, order=[[i] for i in ids])
    _, tokenizer = load_version(chat_version, "cpu")
    [record] = ranking_records(Ranking.objects.filter(task=task))
    assert record.prompt == context
    [example], _ = ranking_examples(tokenizer, [record], block_size=10_000)
    prompt_ids = tokenizer.render_prompt(context)
    for sequence, text, length in zip(example.sequences, record.completions,
                                      example.reply_lengths, strict=True):  # fmt: skip
        assert sequence == prompt_ids + tokenizer.render_reply(text)
        assert length == len(tokenizer.render_reply(text))
    assert len(example.pairs) == 6  # C(4, 2) from one full ordering


def test_a_long_conversation_loses_its_oldest_exchanges_first(chat_model_dir):
    from training.inference.worker import ContextTooSmall
    from training.ml.model_files import read_config
    from training.ml.tokenizer import ChatTokenizer

    tokenizer = ChatTokenizer.load(read_config(chat_model_dir)["tokenizer_path"])
    exchange = [{"role": "user", "content": f"Question {i}: what does sorted return? " * 2}
                if i % 2 == 0 else {"role": "assistant", "content": "A new sorted list. " * 3}
                for i in range(12)]  # fmt: skip
    turns = [*exchange, {"role": "user", "content": "And the last question?"}]
    ids, dropped, max_new = fit_prompt(tokenizer, turns, context=128, max_new_tokens=40)
    assert dropped > 0 and dropped % 2 == 0
    assert ids == tokenizer.render_prompt(turns[dropped:])  # the newest turns, whole
    assert len(ids) + 40 <= 128 and max_new == 40
    assert len(tokenizer.render_prompt(turns[dropped - 2 :])) + 40 > 128  # dropped no more
    with pytest.raises(ContextTooSmall, match="too long for this model"):
        fit_prompt(tokenizer, [{"role": "user", "content": "word " * 400}], context=128,
                   max_new_tokens=40)  # fmt: skip

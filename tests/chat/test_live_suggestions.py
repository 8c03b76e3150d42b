"""A dialogue written from live suggestions records them and how much the person changed them;
one saved unedited is the model's words and stays out of SFT unless the project includes it."""

import pytest
from chat_helpers import version
from django.contrib.auth import get_user_model
from django.utils import timezone

from chat.services.conversations import chat_models_allow, suggestion_request
from labeling.errors import Invalid, NotFound
from labeling.models import Demonstration, Project
from labeling.services.demonstrations import dialogue_create
from training.services.generations import generation_finish
from training.services.snapshots import demonstrations_of

pytestmark = pytest.mark.django_db
User = get_user_model()
QUESTION = {"role": "user", "content": "How do I sort a list?"}


@pytest.fixture
def project(db):
    project = Project.objects.create(name="Help", slug="help", k=4)
    chat_models_allow(project=project, versions=[version("sft-1", project=project)])
    return project


def suggested(lena, project, text="Use sorted(items)."):
    generation = suggestion_request(labeler=lena, project=project, turns=[QUESTION])
    generation_finish(generation, text=text, finish_reason="stop", completion_tokens=4)
    return generation


def save(lena, project, reply, live, token="t1"):
    return dialogue_create(project=project, labeler=lena, client_token=token,
                           turns=[QUESTION, {"role": "assistant", "content": reply}],
                           live_suggestions=live)  # fmt: skip


def test_an_unedited_live_suggestion_is_marked_and_left_out_of_sft(lena, project):
    generation = suggested(lena, project)
    kept = save(lena, project, "Use sorted(items).", {"2": str(generation.key)})
    assert kept.edit_distance == 0 and kept.is_unedited_suggestion
    assert list(kept.live_suggestions.all()) == [generation]

    edited = save(lena, project, "Use sorted(items), or items.sort() in place.",
                  {2: str(suggested(lena, project).key)}, token="t2")  # fmt: skip
    assert edited.edit_distance == len(", or items.sort() in place")
    written = save(lena, project, "My own words.", None, token="t3")
    assert written.edit_distance is None

    assert set(demonstrations_of(project, timezone.now())) == {edited, written}
    project.sft_include_unedited = True
    project.save()
    assert set(demonstrations_of(project, timezone.now())) == {kept, edited, written}


def test_a_suggestion_must_be_yours_finished_and_on_an_assistant_turn(lena, project):
    generation = suggested(lena, project)
    with pytest.raises(Invalid, match="not an assistant turn"):
        save(lena, project, "x", {"1": str(generation.key)})
    with pytest.raises(Invalid, match="not an assistant turn"):
        save(lena, project, "x", {"²": str(generation.key)})
    with pytest.raises(NotFound, match="not one the model wrote for you"):
        save(lena, project, "x", {"2": "not-a-key"})
    omar = User.objects.create_user("omar")
    with pytest.raises(NotFound):
        dialogue_create(project=project, labeler=omar, client_token="o1",
                        turns=[QUESTION, {"role": "assistant", "content": "x"}],
                        live_suggestions={"2": str(generation.key)})  # fmt: skip
    assert not Demonstration.objects.exists()

"""One error base class for both apps: a view, the API or a command catches `ServiceError` and
shows the message with its status, whichever app's service refused."""

import pytest

from labeling import errors as labeling_errors
from training import errors as training_errors
from webapp.errors import ServiceError


@pytest.mark.parametrize("module", [labeling_errors, training_errors])
def test_each_apps_errors_are_service_errors_with_a_status(module):
    for name in ("Invalid", "NotFound", "Conflict"):
        error = getattr(module, name)("nope <b>")
        assert isinstance(error, ServiceError) and str(error) == error.message == "nope <b>"
    assert module.NotFound("x").status == 404 and module.Conflict("x").status == 409


@pytest.mark.urls("training_urls")
def test_a_training_page_shows_a_labeling_refusal_as_its_message(client, staff):
    client.force_login(staff)
    response = client.get("/training/projects/nope/")  # labeling's NotFound, in a training view
    assert response.status_code == 404
    assert "No project &#x27;nope&#x27;." in response.content.decode()

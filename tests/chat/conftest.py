"""Fixtures of the chat tests: a project, a labeler and her logged-in client."""

import pytest
from django.contrib.auth import get_user_model

from labeling.models import Project


@pytest.fixture
def project(db):
    return Project.objects.create(name="Help", slug="help", k=4)


@pytest.fixture
def lena(db):
    return get_user_model().objects.create_user("lena")


@pytest.fixture
def lena_client(client, lena):
    client.force_login(lena)
    return client

"""Fixtures of the labeling tests: a labeler, a project with one ranking task, a logged-in
client. A module that needs another project defines its own `project`."""
import pytest
from labeling_factories import make_project, make_tasks, make_user


@pytest.fixture
def labeler(db):
    """As the shared fixture, without hashing a password (0.4 s): these tests force_login."""
    return make_user("lena")


@pytest.fixture
def project(db):
    return make_project(name="Help", slug="help", k=4, guidelines="Be kind.")


@pytest.fixture
def task(project):
    return make_tasks(project, 1)[0]


@pytest.fixture
def lena_client(client, labeler):
    client.force_login(labeler)
    return client

"""Logging in: a limit on failed attempts per username and address, with a clear message; the
password-reset pages only where email can be sent, and then they send it."""
import re

import pytest
import werkzeug.test
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application

from webapp.wsgi import behind_proxies

pytestmark = pytest.mark.django_db
LOGIN = "/accounts/login/"


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def user():
    return get_user_model().objects.create_user("lisa", email="lisa@example.com",
                                                password="right-password-1")


def attempt(client, password, username="lisa", address="10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password},
                       REMOTE_ADDR=address)


def test_after_too_many_failures_even_the_right_password_is_refused_for_a_while(
    client, user, settings
):
    settings.LOGIN_FAILURE_LIMIT = 3
    for _ in range(3):
        response = attempt(client, "wrong")
        assert response.status_code == 200 and "enter a correct username" in response.text
    locked = attempt(client, "right-password-1")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.text and "15 minutes" in locked.text
    assert "_auth_user_id" not in client.session
    # Another address, or another username, is not locked out by them.
    assert attempt(client, "right-password-1", address="10.0.0.2").status_code == 302
    cache.clear()  # the lockout has passed
    assert attempt(client, "right-password-1").status_code == 302


def test_a_successful_login_clears_the_count(client, user, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    attempt(client, "wrong")
    attempt(client, "wrong")
    assert attempt(client, "right-password-1").status_code == 302
    client.logout()
    attempt(client, "wrong")
    attempt(client, "wrong")
    assert attempt(client, "right-password-1").status_code == 302


def test_the_admin_login_has_the_same_limit(client, settings):
    get_user_model().objects.create_user("root", password="right-password-1", is_staff=True)
    settings.LOGIN_FAILURE_LIMIT = 2
    for _ in range(2):
        client.post("/admin/login/", {"username": "root", "password": "x"})
    response = client.post("/admin/login/", {"username": "root", "password": "right-password-1"})
    assert "Too many failed logins" in response.text
    assert "_auth_user_id" not in client.session


def test_without_email_there_are_no_password_reset_pages(client, user, settings):
    settings.PASSWORD_RESET_ENABLED = False
    assert client.get("/accounts/password_reset/").status_code == 404
    assert client.post("/accounts/password_reset/", {"email": "lisa@example.com"}).status_code \
        == 404
    assert "Forgot your password" not in client.get(LOGIN).text


def test_with_email_a_password_reset_sends_a_working_link(client, user, settings):
    settings.PASSWORD_RESET_ENABLED = True
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert "Forgot your password" in client.get(LOGIN).text
    response = client.post("/accounts/password_reset/", {"email": "lisa@example.com"})
    assert response.status_code == 302 and len(mail.outbox) == 1
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)
    assert form.status_code == 200
    done = client.post(form.redirect_chain[-1][0], {
        "new_password1": "a-new-password-77", "new_password2": "a-new-password-77"})
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password("a-new-password-77")


def wsgi_login(app, forwarded_for: str, password: str):
    """A login through the WSGI application as a browser does it behind a proxy at 10.9.9.9:
    the form's page first (CSRF cookie and token), then the post."""
    browser = werkzeug.test.Client(app)
    headers = {"X-Forwarded-For": forwarded_for}
    environ = {"REMOTE_ADDR": "10.9.9.9"}
    page = browser.get(LOGIN, headers=headers, environ_base=environ).get_data(as_text=True)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    return browser.post(LOGIN, headers=headers, environ_base=environ, data={
        "username": "lisa", "password": password, "csrfmiddlewaretoken": token})


# Through the WSGI handler, whose end-of-request signal closes the database connection (the
# test client's does not): committed rows, not the test's transaction.
@pytest.mark.django_db(transaction=True)
def test_behind_a_proxy_failures_count_per_client_address_not_per_proxy(user, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    app = behind_proxies(get_wsgi_application(), 1)
    for _ in range(2):
        assert wsgi_login(app, "203.0.113.7", "wrong").status_code == 200
    assert wsgi_login(app, "203.0.113.7", "right-password-1").status_code == 429
    # Lisa at another address, behind the same proxy, still logs in; an address the attacker
    # writes in front of the proxy's own entry does not move the count elsewhere.
    assert wsgi_login(app, "198.51.100.4", "right-password-1").status_code == 302
    assert wsgi_login(app, "198.51.100.4, 203.0.113.7", "right-password-1").status_code == 429


@pytest.mark.django_db(transaction=True)
def test_without_a_proxy_count_the_forwarded_header_is_not_trusted(user, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    app = behind_proxies(get_wsgi_application(), 0)
    for address in ("203.0.113.7", "203.0.113.8"):
        wsgi_login(app, address, "wrong")
    assert wsgi_login(app, "203.0.113.9", "right-password-1").status_code == 429

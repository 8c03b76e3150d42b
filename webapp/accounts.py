"""Logging in, with a limit on failed attempts, and the account pages people may use.

Login limit. After `LOGIN_FAILURE_LIMIT` failed logins for one username from one address, that
pair is refused for `LOGIN_LOCKOUT_SECONDS` with a message saying so (HTTP 429), whether or not
the password is right by then; a successful login clears the count. The counts live in Django's
cache: with several web processes (gunicorn) set `CACHE_URL` to a shared cache (Redis) so the
limit holds across them. If the cache is unreachable, logins go on (and the log says so): a
lockout for everyone would be worse than no limit for a while.

Password reset needs email: its pages exist only when `EMAIL_URL` configures a backend
(`PASSWORD_RESET_ENABLED`); otherwise they are a 404 rather than a page that says an email was
sent when none can be.
"""
import hashlib
import logging
from functools import wraps

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import Http404
from django.urls import path

logger = logging.getLogger(__name__)


def _key(request, username: str) -> str:
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    who = hashlib.sha256(f"{username.strip().casefold()}\n{address}".encode()).hexdigest()
    return f"login-failures:{who}"


def _failures(key: str) -> int:
    try:
        return cache.get(key, 0)
    except Exception:  # noqa: BLE001 - any cache backend's connection error
        logger.warning("login limit: the cache is unreachable; not counting failures")
        return 0


def _record_failure(key: str) -> None:
    try:
        if not cache.add(key, 1, timeout=settings.LOGIN_LOCKOUT_SECONDS):
            cache.incr(key)
            cache.touch(key, timeout=settings.LOGIN_LOCKOUT_SECONDS)
    except Exception:  # noqa: BLE001
        logger.warning("login limit: the cache is unreachable; failure not counted")


def _clear(key: str) -> None:
    try:
        cache.delete(key)
    except Exception:  # noqa: BLE001
        logger.warning("login limit: the cache is unreachable; count not cleared")


class LoginLimit:
    """For an AuthenticationForm: refuse a locked username/address pair before checking the
    password, count a failure, clear the count on success."""

    locked = False

    def clean(self):
        key = _key(self.request, self.data.get("username", "") or "")
        if _failures(key) >= settings.LOGIN_FAILURE_LIMIT:
            self.locked = True
            minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
            raise ValidationError(
                f"Too many failed logins for this username from your address. Try again in "
                f"{minutes} minutes, or ask an administrator to reset your password.",
                code="locked",
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            _record_failure(key)
            raise
        _clear(key)
        return cleaned


class LimitedAuthenticationForm(LoginLimit, AuthenticationForm):
    pass


class LimitedAdminAuthenticationForm(LoginLimit, AdminAuthenticationForm):
    pass


class LoginView(auth_views.LoginView):
    authentication_form = LimitedAuthenticationForm

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs),
                "password_reset": settings.PASSWORD_RESET_ENABLED}

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.locked:
            response.status_code = 429
        return response


def _needs_email(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not settings.PASSWORD_RESET_ENABLED:
            raise Http404("Password reset is not available: no email backend is configured.")
        return view(request, *args, **kwargs)

    return wrapper


urlpatterns = [
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(),
         name="password_change_done"),
    path("password_reset/", _needs_email(auth_views.PasswordResetView.as_view()),
         name="password_reset"),
    path("password_reset/done/", _needs_email(auth_views.PasswordResetDoneView.as_view()),
         name="password_reset_done"),
    path("reset/<uidb64>/<token>/", _needs_email(auth_views.PasswordResetConfirmView.as_view()),
         name="password_reset_confirm"),
    path("reset/done/", _needs_email(auth_views.PasswordResetCompleteView.as_view()),
         name="password_reset_complete"),
]

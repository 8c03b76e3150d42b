"""Every page carries a Content-Security-Policy that allows no inline script, and a
Permissions-Policy; no template needs more (no inline <script>, no on...= handlers, no style
attributes), and in a real browser the pages run under the policy without a violation."""
import re
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted(ROOT.glob("*/templates/**/*.html"))  # every app's
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle\s*=", re.I)


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/accounts/login/", "/label/", "/api/labeling/projects/",
                                 "/training/", "/admin/", "/no-such-page/"])
def test_every_response_carries_the_policies(client, staff, url):
    client.force_login(staff)
    response = client.get(url)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "object-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "camera=()" in response.headers["Permissions-Policy"]
    assert "microphone=()" in response.headers["Permissions-Policy"]


def test_no_template_needs_inline_script_or_style():
    assert TEMPLATES
    for template in TEMPLATES:
        text = template.read_text()
        for pattern in (INLINE_SCRIPT, HANDLER, STYLE_ATTRIBUTE):
            assert not pattern.search(text), f"{template.relative_to(ROOT)}: {pattern.pattern}"


def test_the_policy_is_what_the_settings_say():
    assert settings.CONTENT_SECURITY_POLICY["script-src"] == ["'self'"]
    assert settings.CONTENT_SECURITY_POLICY["style-src"] == ["'self'"]


@pytest.mark.browser
def test_pages_run_under_the_policy_without_violations(page, live_server, transactional_db):
    """The labeling page's script (drafts, keys, drag and drop) and htmx still work."""
    from django.contrib.auth import get_user_model

    from labeling.models import Prompt
    from labeling.services.demonstrations import prompt_create
    from labeling.services.projects import project_create
    from labeling.services.ranking_tasks import ranking_tasks_create

    project = project_create(name="CSP", slug="csp", k=4)
    prompt = prompt_create(project=project, turns=[{"role": "user", "content": "Why?"}],
                           source=Prompt.Source.IMPORTED)
    ranking_tasks_create(project=project, batch_key="csp", prompt_completions=[
        (prompt.pk, [{"text": f"Because {i}."} for i in range(4)])])
    get_user_model().objects.create_user("csp-user", password="csp-password-1", is_staff=True)
    violations = []
    page.on("console", lambda msg: violations.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    page.goto("/accounts/login/?next=/label/")
    page.fill("input[name=username]", "csp-user")
    page.fill("input[name=password]", "csp-password-1")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.evaluate("document.documentElement.classList.contains('js')")
    with page.expect_navigation():
        page.click("form[action='/label/rank/next/'] button[type=submit]")
    page.wait_for_selector(".completion")
    for url in ("/", "/training/", "/status/", "/admin/"):
        page.goto(url)
    assert not violations, violations

"""Security headers on every response: a Content-Security-Policy and a Permissions-Policy.

The policy allows only this site's own files: scripts and styles from static files (no inline
`<script>`, no `style=""` attribute, no `on...=` handler, no eval), images from the site or
`data:` URLs, forms posting to the site, no plugins, no framing. What it allows is
`settings.CONTENT_SECURITY_POLICY` (directive -> sources), so a new need is one visible line there.
A view that sets its own header keeps it.
"""
from django.conf import settings


def _header(directives: dict[str, list[str]]) -> str:
    return "; ".join(f"{name} {' '.join(sources)}".strip() for name, sources in directives.items())


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.csp = _header(settings.CONTENT_SECURITY_POLICY)
        self.permissions = ", ".join(
            f"{feature}=({' '.join(allowed)})"
            for feature, allowed in settings.PERMISSIONS_POLICY.items()
        )

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.csp)
        response.headers.setdefault("Permissions-Policy", self.permissions)
        return response

"""The site's URLs with the JSON API at /api/labeling/, as webapp/urls.py mounts it (used by the
API tests so they run whether or not the include is there yet)."""
from django.urls import include, path

from webapp.urls import urlpatterns as site

mounted = any(getattr(p, "app_name", None) == "labeling_api" for p in site)
urlpatterns = site if mounted else [*site, path("api/labeling/", include("labeling.api.urls"))]

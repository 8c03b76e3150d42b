"""The site's URLs with the labeler UI at /label/, as webapp/urls.py mounts it.

Used by the view and browser tests (`@pytest.mark.urls("labeling_urls")`) so they run whether
or not the include is in webapp/urls.py yet; once it is, this is the site's urlconf unchanged.
"""
from django.urls import include, path

from webapp.urls import urlpatterns as site

mounted = any(getattr(p, "app_name", None) == "labeling" for p in site)
urlpatterns = site if mounted else [*site, path("label/", include("labeling.urls"))]

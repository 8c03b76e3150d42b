"""The site's URLs with the training pages at /training/, as webapp/urls.py mounts them.

Used by the view tests (`@pytest.mark.urls("training_urls")`) so they run whether or not the
include is in webapp/urls.py yet; once it is, this is the site's urlconf unchanged.
"""

from django.urls import include, path

from webapp.urls import urlpatterns as site

mounted = any(getattr(p, "app_name", None) == "training" for p in site)
urlpatterns = site if mounted else [*site, path("training/", include("training.urls"))]

"""The WSGI application gunicorn serves (Dockerfile, docker-compose.yml's web service).

Each gunicorn worker imports this module after the fork and loads the whole application here, not
on its first request: the URLconf and with it every view, form and CRF definition. A broken import
then stops the worker at boot instead of failing a user's request.

Everything loaded is then frozen for the garbage collector (`gc.freeze`): the 100,000-odd objects
of Django, the libraries and the CRF are never garbage and need not be walked again. A worker's full
collections then walk only what its requests left behind: pauses of 10-15 ms instead of 30-60 ms
in the middle of a request (docs/benchmarks.md, pages, "Sixth pass").
"""

import gc
import os
from importlib import import_module

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cohort.settings")


def load() -> WSGIHandler:
    """The application with its URLconf loaded and the heap so far frozen."""
    handler = get_wsgi_application()
    import_module(settings.ROOT_URLCONF)  # the URLconf, and with it every view module
    gc.collect()  # what loading left as garbage is freed, not frozen
    gc.freeze()
    return handler


application = load()

"""WSGI entry point (gunicorn planasonix_env.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "planasonix_env.settings")

application = get_wsgi_application()

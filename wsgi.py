"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""
import os

from app import create_app
from app.runtime import tune_gc
from app.web import admission

app = create_app()
if os.environ.get("NUBO_PROCESS", "web") == "web":  # not the upload process: an upload may take minutes
    admission.install(app)
tune_gc()

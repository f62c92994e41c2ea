"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""
from app import create_app
from app.runtime import tune_gc

app = create_app()
tune_gc()

"""The worker process: `huey_consumer app.jobs.worker.huey`.

Creates the Flask app once so tasks run with an app context and the same
configuration as the web process.
"""
from app import create_app
from app.jobs import huey  # noqa: F401  (the consumer imports this name)

flask_app = create_app()

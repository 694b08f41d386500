"""honker's web dashboard (optional extra: ``pip install 'honker-py[dashboard]'``).

A live operations page for one honker database: queues, jobs, streams, schedules, locks.
Start it with ``python -m honker dashboard app.db`` (see :func:`serve`) or mount the ASGI
app from :func:`create_app` in an existing application. ``import honker`` never imports
this package, so the core keeps no dependencies.
"""

from .server import create_app, serve

__all__ = ["create_app", "serve"]

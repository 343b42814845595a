"""The server's routes as one FastAPI ``APIRouter`` per resource. :func:`medseg.server.app.create_app` includes
:data:`PAGES` (then mounts the static files) and :data:`API` in this order, the order their paths are matched
and listed in ``/openapi.json``."""

from medseg.server.routes import accounts, downloads, models, pages, results, studies

#: the one-page viewer: ``/``, ``/login``, ``/favicon.ico``
PAGES = pages.router
#: the JSON API under ``/api``: accounts, models and health, studies, results, downloads
API = (accounts.router, models.router, studies.router, results.router, downloads.router)

__all__ = ["API", "PAGES"]

"""``medseg serve``: a web system for automatic segmentation — upload a study, a worker segments it with a
registered model, view it slice by slice beside the original (and a reference), download the result.

Modules: :mod:`~medseg.server.app` (the app), :mod:`~medseg.server.routes` (its routes, by resource),
:mod:`~medseg.server.db` (SQLite), :mod:`~medseg.server.auth`
(users, passwords, sessions), :mod:`~medseg.server.upload` (streamed multipart bodies),
:mod:`~medseg.server.storage` (checking and storing uploads), :mod:`~medseg.server.jobs` (the worker),
:mod:`~medseg.server.slices` (viewer PNGs), :mod:`~medseg.server.exports` (downloads),
:mod:`~medseg.server.registry` (models), :mod:`~medseg.server.settings`.
"""

from medseg.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def create_app(*args, **kwargs):
    """:func:`medseg.server.app.create_app`, imported on use so ``import medseg.server`` stays light."""
    from medseg.server.app import create_app as _create_app

    return _create_app(*args, **kwargs)

from __future__ import annotations

from django.core.files.storage import FileSystemStorage


class PrivateStorage(FileSystemStorage):
    """Files under MEDIA_ROOT (``PRIVATE_STORAGE_ROOT``) that have no public URL.

    Photos and heatmaps are served only by views that check the viewer's role; asking for a URL is a bug.
    """

    def url(self, name: str | None) -> str:
        raise ValueError("private files have no public URL; serve them through a view that checks access")

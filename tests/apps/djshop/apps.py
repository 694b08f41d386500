"""The recipe: attach honker to every new SQLite connection Django opens."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created

import honker


def attach_honker(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "sqlite":
        honker.attach(connection.connection)


class ShopConfig(AppConfig):
    name = "apps.djshop"
    label = "djshop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        connection_created.connect(attach_honker, dispatch_uid="honker.attach")

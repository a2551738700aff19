"""Foundation models (pretrained sequence models read from a local folder) behind one
interface: ``load_backbone(kind, path)`` -> ``Backbone`` with ``embed`` and ``forecast``.
Kinds: ``chronos`` (Chronos-Bolt), ``kronos``, ``timesfm`` (TimesFM 2.5). See
``moola.models.foundation.base``."""

from moola.models.foundation.base import (
    BACKBONES,
    Backbone,
    BackboneSpec,
    backbone_spec,
    directory_sha256,
    load_backbone,
)

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneSpec",
    "backbone_spec",
    "directory_sha256",
    "load_backbone",
]

"""Face rigs: :class:`FaceRig`, the embedded default rig, and loaders (ICT-FaceKit, glTF, OBJ folders).

Built-in rigs (shipped in ``rig/data/``): ``builtin_rig(name)`` with ``name`` in ``BUILTIN_RIGS`` --
``"ict"`` (``ict_rig()``, derived from ICT-FaceKit, the CLI's default) and ``"stylized"``
(``default_rig()``, facecore's procedural head); ``load_rig(name_or_path)`` resolves what a user types
(a built-in name, a rig file, a glTF, an OBJ or ICT-FaceKit folder); ``FaceRig.load`` / ``rig.save``
read and write the single-file format documented in :mod:`facecore.rig.face_rig`.
"""

from .face_rig import FORMAT_VERSION, FaceRig

__all__ = ["BUILTIN_RIGS", "DEFAULT_RIG", "FORMAT_VERSION", "FaceRig", "builtin_rig", "default_rig",
           "ict_rig", "load_gltf", "load_ict", "load_obj_folder", "load_rig"]


def __getattr__(name: str):
    # Loaders import lazily: `import facecore.rig` stays cheap.
    if name in ("default_rig", "ict_rig", "builtin_rig", "load_rig", "BUILTIN_RIGS", "DEFAULT_RIG"):
        from . import default

        return getattr(default, name)
    if name == "load_ict":
        from .ict import load_ict

        return load_ict
    if name == "load_gltf":
        from .gltf import load_gltf

        return load_gltf
    if name == "load_obj_folder":
        from .obj_folder import load_obj_folder

        return load_obj_folder
    raise AttributeError(f"module 'facecore.rig' has no attribute {name!r}")

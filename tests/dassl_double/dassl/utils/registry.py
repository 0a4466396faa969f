"""Mirrors ``dassl.utils.registry``: name -> object registries filled by a decorator."""

from typing import Any, Callable, Optional

__all__ = ["Registry"]


class Registry:
    """Mirrors Dassl's ``Registry``: objects are registered under their ``__name__``."""

    def __init__(self, name: str) -> None:
        """Create an empty registry called ``name`` (used in error messages, as in Dassl)."""
        self._name = name
        self._obj_map: dict[str, Any] = {}

    def _do_register(self, name: str, obj: Any, force: bool = False) -> None:
        """Store ``obj`` under ``name``; a taken name raises ``KeyError`` unless ``force``, as in Dassl."""
        if name in self._obj_map and not force:
            raise KeyError(
                f'An object named "{name}" was already registered in "{self._name}" registry'
            )
        self._obj_map[name] = obj

    def register(self, obj: Any = None, force: bool = False) -> Optional[Callable[[Any], Any]]:
        """Register ``obj`` by its ``__name__``, or return a decorator doing so when ``obj`` is None."""
        if obj is None:

            def decorator(fn_or_class: Any) -> Any:
                """Register ``fn_or_class`` under its ``__name__`` and return it unchanged."""
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class

            return decorator
        self._do_register(obj.__name__, obj, force=force)
        return None

    def get(self, name: str) -> Any:
        """Return the object registered as ``name``; an unknown name raises ``KeyError`` as in Dassl."""
        if name not in self._obj_map:
            # Dassl's message names the registry; listing what is registered is the double's extra help.
            raise KeyError(
                f'Object name "{name}" does not exist in "{self._name}" registry '
                f"(registered: {sorted(self._obj_map)})"
            )
        return self._obj_map[name]

    def registered_names(self) -> list[str]:
        """Return the registered names in registration order, as Dassl does."""
        return list(self._obj_map.keys())

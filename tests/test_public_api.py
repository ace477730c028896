"""The public surface of ``attentive_router``: ``__all__`` is exact, every module is private."""

from __future__ import annotations

import importlib
import pkgutil
import types

import attentive_router

ENTRY_MODULES = frozenset({"__init__", "__main__"})


def _submodules() -> list[str]:
    """Dotted names of every module under the package (``attentive_router._cli``, ...)."""
    return sorted(
        info.name
        for info in pkgutil.walk_packages(
            attentive_router.__path__,
            prefix=f"{attentive_router.__name__}.",
            onerror=lambda _name: None,
        )
        if info.name.rsplit(".", 1)[-1] != "__main__"
    )


def test_all_is_sorted() -> None:
    assert attentive_router.__all__ == sorted(attentive_router.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(set(attentive_router.__all__)) == len(attentive_router.__all__)


def test_every_name_in_all_exists() -> None:
    missing = [name for name in attentive_router.__all__ if not hasattr(attentive_router, name)]
    assert missing == []


def test_every_public_module_level_name_is_in_all() -> None:
    for name in attentive_router.__all__:  # the names load on first use
        getattr(attentive_router, name)
    public = {
        name
        for name, value in vars(attentive_router).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(public - set(attentive_router.__all__)) == []
    assert sorted(set(attentive_router.__all__) - public) == []


def test_every_name_in_all_is_loaded_from_its_module() -> None:
    assert sorted(attentive_router._HOME) == attentive_router.__all__
    for name, module in attentive_router._HOME.items():
        home = importlib.import_module(f"attentive_router._transform.{module}")
        assert getattr(attentive_router, name) is getattr(home, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    assert not hasattr(attentive_router, "no_such_name")
    assert "route" in dir(attentive_router)


def test_no_public_submodule_is_bound_on_the_package() -> None:
    modules = [
        name
        for name, value in vars(attentive_router).items()
        if isinstance(value, types.ModuleType) and not name.startswith("_")
    ]
    assert modules == []


def test_the_package_has_submodules_to_check() -> None:
    # Guards the privacy test below against passing vacuously on an empty walk.
    assert "attentive_router._cli" in _submodules()
    assert "attentive_router._transform.generated.transforms" in _submodules()


def test_all_submodules_are_private() -> None:
    """Like httpx: only the package itself is public; every module below it is ``_private``."""
    public = []
    for name in _submodules():
        parts = name.split(".")[1:]
        if parts[-1] in ENTRY_MODULES:
            continue
        # A module inside a private package is private through its package.
        if not parts[0].startswith("_"):
            public.append(name)
    assert public == []


def test_direct_submodules_all_start_with_an_underscore() -> None:
    names = [
        info.name
        for info in pkgutil.iter_modules(attentive_router.__path__)
        if info.name not in ENTRY_MODULES
    ]
    assert names, "no submodules found"
    assert [name for name in names if not name.startswith("_")] == []


def test_all_submodules_import() -> None:
    for name in _submodules():
        assert importlib.import_module(name).__name__ == name

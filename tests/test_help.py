"""``help(alphapoint.connect)`` and friends read well.

No private constructor arguments, no ``<object object at 0x...>`` defaults,
and every name a public docstring refers to (``:class:`Totp```...) can be
imported from where it says: from :mod:`alphapoint` when the name is bare.
"""

from __future__ import annotations

import importlib
import inspect
import pydoc
import re
import typing
from collections.abc import Iterator
from typing import Any

import pytest

import alphapoint
import alphapoint.sync
import alphapoint.testing

PUBLIC_MODULES = [alphapoint, alphapoint.sync, alphapoint.testing]
ROLE = re.compile(r":(?:class|func|meth|data|mod|exc|attr):`~?([A-Za-z_][\w.]*)`")


def public_objects() -> Iterator[tuple[str, Any, Any]]:
    """(dotted name, object, the class it is or belongs to) of every public name."""
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            owner = obj if inspect.isclass(obj) else None
            yield f"{module.__name__}.{name}", obj, owner
            if owner is not None:
                for attribute, member in vars(obj).items():
                    if not attribute.startswith("_") and (
                        inspect.isfunction(member) or isinstance(member, property)
                    ):
                        yield f"{module.__name__}.{name}.{attribute}", member, owner


def resolves(reference: str, owner: Any) -> bool:
    """Whether ``reference`` names something importable: dotted from its module, bare
    from :mod:`alphapoint` (or :mod:`alphapoint.testing`), or a member of ``owner``'s class."""
    head, _, rest = reference.partition(".")
    candidates: list[Any] = [alphapoint, alphapoint.testing]
    if owner is not None:
        candidates.append(owner)
    for base in candidates:
        obj = getattr(base, head, None)
        for part in rest.split(".") if rest else []:
            obj = getattr(obj, part, None)
        if obj is not None:
            return True
    # A dotted path from its module: alphapoint.decoding.decode, alphapoint.drivers.
    parts = reference.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part, None)
        return obj is not None
    return False


@pytest.mark.parametrize(
    "obj",
    [alphapoint.connect, alphapoint.Session, alphapoint.sync.connect, alphapoint.sync.SyncSession],
)
def test_help_shows_no_private_arguments_and_no_object_reprs(obj: Any) -> None:
    text = pydoc.render_doc(obj, renderer=pydoc.TextDoc())
    assert not re.search(r" at 0x[0-9a-f]+>", text)
    signature = inspect.signature(obj)
    for parameter in signature.parameters.values():
        assert not parameter.name.startswith("_")
        annotation = str(parameter.annotation)
        assert "Login" not in annotation  # the private login record stays inside


def test_every_public_name_has_a_docstring() -> None:
    # Constants and type aliases carry their docstrings in the source, where the
    # reference site reads them (scripts/check_reference.py checks those).
    missing = [
        name
        for name, obj, _ in public_objects()
        # (A generic alias such as Callable[..., Any] counts as a class on 3.10.)
        if (inspect.isclass(obj) or inspect.isroutine(obj) or isinstance(obj, property))
        and typing.get_origin(obj) is None
        and not inspect.getdoc(obj)
    ]
    assert missing == []


def test_every_name_a_public_docstring_mentions_is_importable() -> None:
    broken = []
    for name, obj, owner in public_objects():
        for reference in ROLE.findall(inspect.getdoc(obj) or ""):
            if not resolves(reference, owner):
                broken.append(f"{name}: {reference}")
    assert broken == []

"""Registries of plugins: distillers, exemplar selection, frame policies, classifier heads.

A plugin is one module of its family's package, named after its ``kind``, that defines a pydantic
config (``kind: Literal["<name>"]`` plus its options) and registers its implementation where it
is defined (the torchdistill / mmaction2 habit)::

    @DISTILLERS.register(MyConfig)
    class MyDistillation:  # built as MyDistillation(**options)
        ...

``params.yaml`` picks one by kind (``distil: {kind: tsd, alpha: 0.5}``). The known kinds are the
family's module names, found without importing them, so reading params (a DAG file, ``vidcil
validate``) checks a kind without importing torch; the options are type-checked when the plugin's
module is imported (every step that trains does so when it loads params).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict


class PluginConfig(BaseModel):
    """Base of every plugin's config: its ``kind`` and options; unknown options are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str

    shared: ClassVar[frozenset[str]] = frozenset({"kind"})  # fields that are not the implementation's options

    def options(self) -> dict:
        """The keyword arguments of the implementation."""
        return self.model_dump(exclude=set(self.shared))


class Registry:
    """The plugins of one family: ``kind`` -> (config class, implementation)."""

    def __init__(self, family: str, package: str):
        self.family, self.package = family, package
        self._configs: dict[str, type[PluginConfig]] = {}
        self._impls: dict[str, Callable[..., Any]] = {}

    def kinds(self) -> list[str]:
        """Every kind of this family: the package's public module names (none is imported)."""
        path = importlib.import_module(self.package).__path__
        return sorted(m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_"))

    def register(self, config: type[PluginConfig]):
        """Class/function decorator: register the implementation built from ``config``."""
        kind = config.model_fields["kind"].default
        if not isinstance(kind, str):
            raise TypeError(f"{config.__name__}.kind needs a default: the plugin's kind")

        def decorate(impl):
            if kind in self._impls and self._impls[kind] is not impl:
                raise ValueError(f"{self.family} {kind!r} is registered twice")
            self._configs[kind], self._impls[kind] = config, impl
            return impl

        return decorate

    def check_kind(self, kind: str) -> str:
        if kind not in self.kinds():
            raise ValueError(f"unknown {self.family} kind {kind!r}; known: {', '.join(self.kinds())}")
        return kind

    def config_class(self, kind: str) -> type[PluginConfig]:
        self.check_kind(kind)
        if kind not in self._configs:
            importlib.import_module(f"{self.package}.{kind}")  # registers it
        if kind not in self._configs:
            raise ValueError(f"{self.package}.{kind} defines no registered {self.family}")
        return self._configs[kind]

    def config(self, options: dict | PluginConfig) -> PluginConfig:
        """The typed config of ``options`` (a dict with ``kind``, or a config already)."""
        if isinstance(options, PluginConfig) and type(options) is self._configs.get(options.kind):
            return options
        data = options.model_dump() if isinstance(options, BaseModel) else dict(options)
        if "kind" not in data:
            raise ValueError(f"a {self.family} needs a kind; known: {', '.join(self.kinds())}")
        return self.config_class(data["kind"]).model_validate(data)

    def build(self, options: dict | PluginConfig, **runtime):
        """The implementation for ``options``: ``impl(**config.options(), **runtime)``.

        ``runtime``: what the caller can supply (e.g. ``encoded_size``); each implementation gets
        the ones its signature names.
        """
        config = self.config(options)
        impl = self._impls[config.kind]
        accepted = inspect.signature(impl).parameters
        return impl(**config.options(), **{k: v for k, v in runtime.items() if k in accepted})

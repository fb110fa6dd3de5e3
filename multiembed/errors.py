"""One error hierarchy, so callers can catch everything multiembed raises with a single except."""

from __future__ import annotations


class MultiembedError(Exception):
    """Base of every error multiembed raises on purpose."""


class ModelNotFoundError(MultiembedError):
    """A model spec resolved to nothing loadable: unknown alias, missing directory, or offline hub."""


class InputError(MultiembedError):
    """One input item cannot be embedded; carries the item's name so reports can point at it."""

    def __init__(self, reason: str, source: str | None = None) -> None:
        self.reason = reason
        self.source = source
        super().__init__(f"{source}: {reason}" if source else reason)


class BackendError(MultiembedError):
    """The runtime cannot do what was asked: a device that is absent, a dtype or index it cannot serve."""


class SchemaMismatchError(MultiembedError):
    """A collection was built with another model, dim or metric than the encoder now in use."""


class ConfigError(MultiembedError, ValueError):
    """An option the caller passed is invalid (unknown name, out of range, unknown format).

    It is also a ``ValueError``, so code that caught the built-in error for bad arguments still works.
    """


class CollectionNotFoundError(MultiembedError):
    """A collection asked for by name is not there (and nothing was given to create it)."""

    def __init__(self, collection: str, uri: str, existing: list[str]) -> None:
        self.collection, self.uri, self.existing = collection, uri, existing
        there = ", ".join(existing) if existing else "none"
        super().__init__(
            f"collection {collection!r} does not exist in {uri} (collections there: {there}); "
            "pass an encoder or modality= to create it"
        )


def hidden_interrupt(error: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl+C that ``error`` was raised while handling, if any.

    Cleanup that fails during a KeyboardInterrupt (a close, a rollback) raises an ordinary exception
    that replaces the interrupt; caught as one item's failure, it would let the run carry on after
    the user asked it to stop. Catch-alls ask this first and raise the interrupt instead.
    """
    seen: set[int] = set()
    context = error.__context__
    while context is not None and id(context) not in seen:
        if isinstance(context, KeyboardInterrupt):
            return context
        seen.add(id(context))
        context = context.__context__
    return None

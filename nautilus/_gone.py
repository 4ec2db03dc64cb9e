"""Names of the original library that cannot keep their meaning: an error that says what to use."""

__all__ = ["Gone", "gone"]


class Gone(ImportError):
    """A name of the original library that nautilus on Django replaced (the message says with what)."""


def gone(module, replacements):
    """A module ``__getattr__`` that raises Gone for ``replacements`` (name → what to use instead)."""
    def __getattr__(name):
        if name in replacements:
            raise Gone(f"{module}.{name} is gone in nautilus on Django: {replacements[name]}")
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__

import sendguard


def test_all_is_sorted() -> None:
    # Constants first, then the rest in code-point order (ruff's RUF022 order).
    assert sendguard.__all__ == sorted(sendguard.__all__, key=lambda n: (not n.isupper(), n))


def test_all_lists_every_public_name() -> None:
    public = {
        name
        for name, value in vars(sendguard).items()
        if not name.startswith("_") and not isinstance(value, type(sendguard))
    }
    assert public == set(sendguard.__all__)


def test_every_exported_name_resolves_and_is_documented() -> None:
    for name in sendguard.__all__:
        obj = getattr(sendguard, name)
        assert obj.__doc__, f"{name} has no docstring"


def test_exceptions_form_one_tree() -> None:
    errors = [getattr(sendguard, n) for n in sendguard.__all__ if n.endswith("Error")]
    assert all(issubclass(e, sendguard.SendGuardError) for e in errors)
    assert issubclass(sendguard.ConfigurationError, ValueError)
    assert not issubclass(sendguard.ConfigurationError, sendguard.MessageError)
    assert issubclass(sendguard.StoreError, ConnectionError)
    assert issubclass(sendguard.HeaderInjectionError, sendguard.MessageError)

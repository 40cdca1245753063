"""The template's fixtures (tests/conftest.py), for the lab's tests too."""

from tests.conftest import mirror  # noqa: F401

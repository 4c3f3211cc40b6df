"""Root pytest configuration, shared by ``tests/`` and ``e2e/``: the leaked-process sweep
(``tests.support.sweep``) fails a run that leaves any process it started alive."""

pytest_plugins = ["tests.support.sweep"]

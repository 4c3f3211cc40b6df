"""Support code shared by the tests and the benchmarks.

Direction is one-way: ``bench/`` imports ``tests.support``; nothing under ``tests/`` imports
``bench`` (``tests/unit/test_support_direction.py`` checks it). Modules here must not import
pytest at module level unless they are pytest plugins (``sweep``), so benchmarks can use them.
"""

"""Results on disk: the only thing ``report`` and ``compare`` read.

``results`` (results.csv, env.json, verify.csv: columns, schema versions, reading and
writing) and ``pytest_import`` (a pytest-benchmark JSON file turned into a run directory).
"""

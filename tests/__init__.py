"""The test tree: one folder per package (`lightning_queue/<subpackage>`, `workers`, `algorithms/<name>`)
and cross-cutting suites (`reliability`, `security`, `bench`); shared helpers live in `support`."""

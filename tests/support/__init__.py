"""Helpers the test suites share: redis-servers, store and pool factories, agents for worker processes.

Worker processes import the agents here by "tests.support.<module>:<attr>" with the repository root on
their PYTHONPATH.
"""

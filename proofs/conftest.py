"""Shared pytest setup: hypothesis profiles and the `gpu` marker's skip."""

from normtheory._pytest_setup import register_profiles, skip_gpu_tests_without_cuda

register_profiles()


def pytest_collection_modifyitems(config, items):
    skip_gpu_tests_without_cuda(items)

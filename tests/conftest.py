"""Shared pytest setup: hypothesis profiles, the `gpu` marker's skip, the one-thread fixture."""

from torch_threads import one_torch_thread  # noqa: F401  (a fixture: modules opt in with usefixtures)

from normtheory._pytest_setup import register_profiles, skip_gpu_tests_without_cuda

register_profiles()


def pytest_collection_modifyitems(config, items):
    skip_gpu_tests_without_cuda(items)

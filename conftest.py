"""Root conftest: loads the suite's pytest plugin (options --ssm-*, profiles, report)."""
pytest_plugins = ["properties.plugin"]

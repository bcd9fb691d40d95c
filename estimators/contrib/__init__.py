"""Estimators shipped with estbench but written only against the public plugin interface.

They import nothing from estbench but the names exported by ``estimators`` (like any
third-party plugin) and are registered through the ``estbench.estimators`` entry-point
group in estbench's own pyproject.toml, so they are discovered exactly as plugins are.
"""

"""Syntax rules of the values users write: names, label keys and values, Go durations.

The resource models (:mod:`meshlet.api`) and the node agent's config file
(:mod:`meshlet.agent.config`) apply the same rules. They live here, in the bottom layer, because
importing :mod:`meshlet.api` builds every resource model (pydantic), which the node agent never
needs; :mod:`meshlet.api` re-exports everything here under its old names. This package imports
nothing else of meshlet.

Modules: :mod:`~meshlet.syntax.names`, :mod:`~meshlet.syntax.durations` and the errors they
raise, :mod:`~meshlet.syntax.errors`.
"""

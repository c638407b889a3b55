"""The ``meshlet`` command line (typer + rich).

Modules:

- :mod:`~meshlet.cli.main`: the typer application and the error-to-exit-status mapping.
- :mod:`~meshlet.cli.settings`: where the control plane address, token and CA come from.
- :mod:`~meshlet.cli.resources`: ``apply``, ``get``, ``describe``, ``delete``, ``token create``.
- :mod:`~meshlet.cli.manifests`: reading ``-f`` paths and validating them locally.
- :mod:`~meshlet.cli.output`: tables, YAML/JSON and describe pages (pure).
- :mod:`~meshlet.cli.failures`: control plane errors as one actionable line.
- :mod:`~meshlet.cli.connect`: ``connect``, a netcat over the mesh.
- :mod:`~meshlet.cli.programs`: ``cp run`` and ``agent run``.
- :mod:`~meshlet.cli.up` with :mod:`~meshlet.cli.processes` and :mod:`~meshlet.cli.demo`:
  ``meshlet up``, the local mesh with demo services.
"""

"""Programs of the ``meshlet up`` demo, run as subprocesses (``python -m meshlet.demo.echo``)."""

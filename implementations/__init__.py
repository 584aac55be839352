"""The built-in Affine implementations, one module per family.

Each is declared as an entry point in pyproject.toml (group ``affbench.implementations``), the
way a third-party package declares one: adding a built-in is a module here with a
``KernelImpl`` subclass plus one line there (then ``pip install -e .`` again, which rewrites the
installed entry points).

The peers (PyTorch, JAX) need the optional extra ``peers``: their classes name the packages
they ``require`` and the command that installs them, and the registry declares them as not
installed when those are missing (affbench.registry.register_optional); their modules import
the frameworks only when called.
"""

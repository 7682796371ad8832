"""Built-in solvers. Each registers through the ``oodpl.solvers`` entry point, as a plug-in would."""

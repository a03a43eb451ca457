"""Hydra configs of every CLI, shipped as a regular package.

A regular package (not a namespace one) so that an installed wheel's ``configs`` is the only one Python
sees: a namespace package would merge in any other ``configs`` directory on the path, such as an editable
checkout's, and a CLI could read a config that is not the one it was installed with.
"""

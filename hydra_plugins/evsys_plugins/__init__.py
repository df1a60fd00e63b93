"""Hydra plugins of evsys: its search path and the ``experiment`` group.

Hydra imports every module under ``hydra_plugins`` when it starts, for any Hydra app in the
environment, so these modules import nothing heavy and act only for the evsys app.
"""

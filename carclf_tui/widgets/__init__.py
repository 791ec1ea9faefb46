"""The dashboard's widgets; each draws one part of a :class:`carclf_core.runstate.RunState`."""

"""Streaming sigma-delta conversion (``--coding delta``): artifacts whose points are their time steps."""

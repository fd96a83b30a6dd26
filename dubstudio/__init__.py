"""DubStudio: a desktop dubbing editor that renders speech to fit the picture exactly."""

__version__ = "0.1.0"

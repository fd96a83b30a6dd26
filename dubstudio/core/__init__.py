"""DubStudio core layer."""

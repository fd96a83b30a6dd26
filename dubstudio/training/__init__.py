"""DubStudio training layer."""

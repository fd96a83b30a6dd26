"""DubStudio ui layer."""

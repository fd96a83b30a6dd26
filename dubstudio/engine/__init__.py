"""DubStudio engine layer."""

"""DubStudio services layer."""

"""The Ray Serve application, its configuration and the command line."""

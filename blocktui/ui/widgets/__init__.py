"""The dashboard's widgets: hosts bar, domain tree, jobs table, detail pane, and their inputs."""

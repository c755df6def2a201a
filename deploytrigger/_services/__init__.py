"""The services that give requests their meaning: deployments, parent linking, runs."""

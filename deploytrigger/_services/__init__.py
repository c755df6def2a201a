"""The services that give requests their meaning: deployments, parent placeholders, runs."""

"""Pure helpers below the models: argument checks, deadlines, URLs, how a run is shown."""

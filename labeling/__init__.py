"""The human side: projects, prompts, demonstrations, completions, ranking tasks, rankings."""

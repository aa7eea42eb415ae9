"""What a run shows: the HTML report and its figures (drawn once per content)."""

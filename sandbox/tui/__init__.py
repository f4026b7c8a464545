"""The `rq-sandbox tui` dashboard: a Textual face on the same engine the headless run uses."""

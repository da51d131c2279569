"""Rasa input channels of the project, named in credentials.yml.

Each reads its secrets from clinicbot.settings (environment variables, see .env.example) instead of
credentials.yml, so that `rasa run` starts with every messaging channel off when its variables are unset:
an off channel registers no routes (its webhook answers 404). docs/channels.md has the details.
"""

"""Rasa SDK actions: thin classes over clinicbot's domain modules (storage, booking, settings)."""
